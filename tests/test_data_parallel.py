"""Data parallel under torchrun (accelerate over gloo, 2 CPU processes): each rank trains on
its own share of every global batch, and the update is the one a single process computes
with the whole batch; rank 0 alone validates, saves and logs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from helpers import torchrun, write_params
from test_resume import prepared  # noqa: F401 (a fixture: tiny prepared data and start models)

WORKER = Path(__file__).with_name("dp_worker.py")


def run(out: Path, method: str, batch: int, ranks: int):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    launch = [] if ranks == 1 else torchrun(ranks)
    done = subprocess.run([sys.executable, *launch, str(WORKER), str(out), "--method", method,
                           "--batch", str(batch), "--steps", "3"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return load_file(out / "init.safetensors"), load_file(out / "model.safetensors"), [json.loads((out / f"wrote_{r}.json").read_text())
                                                  for r in range(ranks)]


@pytest.mark.parametrize("method", ["sft", "coconut", "rl", "latent_rl"])
def test_two_ranks_at_batch_b_train_as_one_process_at_2b_and_only_rank_0_writes(tmp_path, method):
    """sft, coconut: 3 steps of a global batch of 8 rows (4 per rank). rl: one PPO update
    over 4 questions x 4 rollouts (2 questions' groups per rank); latent_rl: one Latent RL
    step over 16 questions (8 per rank)."""
    batch = {"rl": 4, "latent_rl": 4}.get(method, 8)
    init, one, _ = run(tmp_path / "one", method, batch=batch, ranks=1)
    _, two, records = run(tmp_path / "two", method, batch=batch, ranks=2)
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    # equal up to float summation order: one batch of 8 and two of 4 add their gradients
    # in another order, and Adam's first steps scale a gradient's rounding noise up (1.1 and
    # 1.9e-5 for sft and coconut on the data of 2026-12-02, under 1e-5 before); a wrong
    # share of the loss or a missed all-reduce moves weights by the size of an update
    assert worst < 5e-5, worst
    # and the steps did move the weights (two runs that change nothing would also agree)
    assert max((one[k] - init[k]).abs().max().item() for k in init) > 1e-3
    main, other = records
    assert main["main"] and main["saved"]
    if method in ("sft", "coconut"):  # the training loop: rank 0 validates and logs
        assert main["validated"] == [0] and any(f.startswith("live/") for f in main["files"])
    assert not other["main"] and other["files"] == [] and other["saved"] == [] and other["validated"] == []


def test_a_global_batch_that_does_not_split_over_the_ranks_is_an_error(tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *torchrun(2), str(WORKER),
                           str(tmp_path / "odd"), "--method", "sft", "--batch", "7", "--steps", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "batch_size 7 (the global batch) does not split evenly over 2 processes" in done.stdout + done.stderr


def test_the_rl_stage_runs_under_two_ranks_and_only_rank_0_writes(prepared, tmp_path):
    """`torchrun --nproc_per_node 2 -m latent_reasoning.stages.rl`: each rank rolls out its
    share of every step's questions; the models, logs and summary come from rank 0 alone."""
    params = write_params(tmp_path / "params.yaml", rl={"steps": 2, "questions": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *torchrun(2), "-m", "latent_reasoning.stages.rl", "--params", str(params),
                           "--data", str(prepared / "data/prepared"), "--start-root", str(prepared),
                           "--rl-run", "atp_rl", "--rl-run", "latent_rl"],  # torchrun takes --run as its --run-path
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "reports/train/rl.json").read_text())
    assert set(summary) == {"atp_rl", "latent_rl"}
    assert (tmp_path / "models/rl/latent_rl/value_head.safetensors").exists()
    assert (tmp_path / "models/rl/atp_rl/model.safetensors").exists()
    # every step logged once (rank 0's DVCLive), not twice
    assert len((tmp_path / "reports/train/rl/atp_rl/plots/metrics/rl/reward.tsv").read_text().splitlines()) == 1 + 2
    assert not (tmp_path / ".resume").exists()
