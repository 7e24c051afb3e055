"""Shared helpers for the tests: tiny params files and running stage mains in-process."""

import socket
import sys
from pathlib import Path

import yaml

TINY = {
    "base": {"seed": 0, "threads": 1, "checkpoint_every": 2},  # every stage's checkpoints exercised
    "data": {"train_size": 400, "valid_size": 16, "test_size": 16},
    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128},
    "train": {"max_steps": 6, "batch_size": 16, "lr": 0.003, "warmup_steps": 2, "eval_every": 3,
              "eval_size": 16, "eval_batch_size": 16, "eval_max_new_tokens": 40, "log_every": 1,
              "overrides": {"nocot": {"max_steps": 6}}},
    "evaluate": {"batch_size": 16, "max_new_tokens": 40},
    "coconut": {"steps_per_stage": 2, "final_stage_steps": 2, "batch_size": 8, "eval_every": 2, "warmup_steps": 1},
    "rl": {"steps": 2, "questions": 2, "group_size": 2, "minibatch": 4, "max_new_tokens": 8, "cot_max_new_tokens": 40,
           # pos_weight set: a 6-step model may answer every value question wrong
           "latent_rl": {"value_questions": 40, "heldout_questions": 20, "value_epochs": 2, "pos_weight": 1.0}},
}


REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_params(path: Path, **overrides) -> Path:
    """The repo's params.yaml made tiny (TINY), then `overrides` per section."""
    params = merge(yaml.safe_load(REPO_PARAMS.read_text()), TINY)
    params = merge(params, overrides)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(monkeypatch, module, *argv):
    """Run a stage's main() as `python -m latent_reasoning.stages.<module> argv...`."""
    import importlib

    mod = importlib.import_module(f"latent_reasoning.stages.{module}")
    monkeypatch.setattr(sys, "argv", [module, *map(str, argv)])
    mod.main()


def free_port() -> int:
    """A free TCP port on localhost, for a torchrun rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(ranks: int) -> list[str]:
    """The interpreter arguments that launch `ranks` local processes under torchrun (then
    the script, or -m and a module)."""
    return ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr", "127.0.0.1",
            "--master_port", str(free_port())]
