"""Data parallel under torchrun (accelerate over gloo, 2 CPU processes): each rank trains on
its own share of every global batch, and the update is the one a single process computes
with the whole batch; rank 0 alone validates, saves and logs."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("dp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(out: Path, method: str, batch: int, ranks: int):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    launch = [] if ranks == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                                    "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    done = subprocess.run([sys.executable, *launch, str(WORKER), str(out), "--method", method,
                           "--batch", str(batch), "--steps", "3"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return load_file(out / "init.safetensors"), load_file(out / "model.safetensors"), [json.loads((out / f"wrote_{r}.json").read_text())
                                                  for r in range(ranks)]


@pytest.mark.parametrize("method", ["sft", "coconut"])
def test_two_ranks_at_batch_b_train_as_one_process_at_2b_and_only_rank_0_writes(tmp_path, method):
    init, one, _ = run(tmp_path / "one", method, batch=8, ranks=1)
    _, two, records = run(tmp_path / "two", method, batch=8, ranks=2)  # 4 rows per rank
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst < 1e-5, worst
    # and the steps did move the weights (two runs that change nothing would also agree)
    assert max((one[k] - init[k]).abs().max().item() for k in one) > 1e-3
    main, other = records
    assert main["main"] and main["saved"] and main["validated"] == [0]
    assert any(f.startswith("live/") for f in main["files"])
    assert not other["main"] and other["files"] == [] and other["saved"] == [] and other["validated"] == []


def test_a_global_batch_that_does_not_split_over_the_ranks_is_an_error(tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(WORKER),
                           str(tmp_path / "odd"), "--method", "sft", "--batch", "7", "--steps", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "batch_size 7 (the global batch) does not split evenly over 2 processes" in done.stdout + done.stderr
