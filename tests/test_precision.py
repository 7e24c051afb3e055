"""bf16: every kind of stage runs with train.bf16 and evaluate.bf16 on (torch's CPU
autocast here; the same switches on a GPU), and its outputs are sound. Each stage runs in
its own process: accelerate fixes its precision once per process."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers import write_params
from test_resume import prepared  # noqa: F401 (a fixture: tiny prepared data and start models)


def run(cwd, module, *argv):
    done = subprocess.run([sys.executable, "-m", f"latent_reasoning.stages.{module}", *map(str, argv)], cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(900)
def test_the_training_rl_and_evaluate_stages_run_in_bf16(prepared, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"bf16": True}, evaluate={"bf16": True},
                          base={"checkpoint_every": 0})
    data = ["--params", params, "--data", prepared / "data/prepared"]
    run(tmp_path, "train", "--method", "cot", *data, "--tokenizer", prepared / "models/tokenizer")
    run(tmp_path, "atp", "--variant", "atp_vae", *data, "--tokenizer", prepared / "models/tokenizer",
        "--cot", prepared / "models/cot")
    run(tmp_path, "rl", "--run", "atp_rl", "--run", "latent_rl", *data, "--start-root", prepared)
    out = run(tmp_path, "evaluate", "--method", "atp_rl", *data)
    # the weights are kept in fp32 (autocast computes in bf16, the parameters stay fp32) and finite
    for folder in ("models/cot", "models/atp/atp_vae", "models/rl/atp_rl", "models/rl/latent_rl"):
        weights = load_file(tmp_path / folder / "model.safetensors")
        assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values()), folder
    summary = json.loads((tmp_path / "reports/train/rl.json").read_text())
    assert summary["atp_rl"]["val_accuracy_after"] is not None
    metrics = json.loads((tmp_path / "reports/eval/atp_rl/metrics.json").read_text())
    for name, m in metrics.items():
        assert 0 <= m["accuracy"] <= 1 and m["n"] > 0 and math.isfinite(m["tokens"]), name
    assert "accuracy" in out
