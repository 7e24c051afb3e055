"""The GPU check: every stage of the pipeline, end to end, on this machine's device, with a
small GPT-2 built from its config and the generated data; prints each stage's wall time,
training steps per second and peak GPU memory, in fp32 and with bf16 autocast.

    python bench/gpu_check.py                 # the GPU-marked tests, then both precisions
    python bench/gpu_check.py --bf16 only --keep /tmp/check --no-tests

Runs on the CPU too (the same stages, no memory figures): that is how it is checked
without a GPU. Together with the GPU-marked tests (`pytest -k gpu`) it is the issue's GPU
check (it runs them first); docs/benchmarks.md records its figures. Every stage runs in this process, one
variant at a time, so the peak memory of each is this process's."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from latent_reasoning.presets import merge

ROOT = Path(__file__).resolve().parents[1]
# small but not trivial: 6 layers of 384 (about 11M parameters), short runs of every stage
SMALL = {
    "base": {"threads": 2, "checkpoint_every": 0},
    "data": {"train_size": 4000, "valid_size": 64, "test_size": 128},
    "model": {"n_layer": 6, "n_embd": 384, "n_head": 6, "n_positions": 256},
    "train": {"max_steps": 200, "batch_size": 32, "eval_every": 100, "eval_size": 64, "eval_batch_size": 64,
              "overrides": {"cot": {}, "nocot": {"max_steps": 100}}},
    "evaluate": {"batch_size": 128},
    "coconut": {"variants": ["coconut"], "steps_per_stage": 20, "final_stage_steps": 40, "eval_every": 20,
                "jobs": 1},
    "atp": {"variants": ["atp_vae"], "jobs": 1},
    "rl": {"runs": ["atp_rl", "grpo_cot", "grpo_coconut", "latent_rl"], "steps": 4, "jobs": 1,
           "latent_rl": {"value_questions": 200, "heldout_questions": 100, "value_epochs": 5, "pos_weight": 1.0}},
}
# --tiny: the same stages at a size that runs in a few minutes on 2 CPU cores (checks the script)
TINY = {"model": {"n_layer": 2, "n_embd": 64, "n_head": 2},
        "data": {"train_size": 1000, "test_size": 32},
        "train": {"max_steps": 20, "eval_every": 10, "overrides": {"cot": {}, "nocot": {"max_steps": 10}}},
        "coconut": {"steps_per_stage": 4, "final_stage_steps": 6, "eval_every": 5},
        "rl": {"steps": 2}}
EVALUATED = ["cot", "coconut", "atp_vae", "atp_rl", "latent_rl"]  # the methods the check evaluates
STAGES = [  # (stage module, its arguments, the DVCLive folders whose steps it trains)
    ("prepare", [], []),
    ("tokenizer", [], []),
    ("train", ["--method", "cot"], ["cot"]),
    ("train", ["--method", "nocot"], ["nocot"]),
    ("coconut", [], ["coconut/coconut"]),
    ("atp", [], ["atp/atp_vae"]),
    ("rl", [], [f"rl/{r}" for r in SMALL["rl"]["runs"]]),
] + [("evaluate", ["--method", m], []) for m in EVALUATED]


def steps_of(folders: list[str]) -> int:
    """Training steps the stage took: DVCLive's last step + 1 in each run's folder."""
    return sum(json.loads((Path("reports/train") / f / "metrics.json").read_text())["step"] + 1 for f in folders)


def run_all(bf16: bool, tiny: bool) -> list[dict]:
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SMALL)
    params = merge(params, TINY) if tiny else params
    params["train"]["bf16"] = params["evaluate"]["bf16"] = bf16
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cuda = torch.cuda.is_available()
    rows = []
    for module, argv, folders in STAGES:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        sys.argv = [module, *argv]
        started = time.time()
        importlib.import_module(f"latent_reasoning.stages.{module}").main()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.time() - started
        steps = steps_of(folders) if folders else None
        rows.append({"stage": " ".join([module, *argv[1:]]), "seconds": seconds, "steps": steps,
                     "steps_per_s": steps / seconds if steps else None,
                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None})
    accuracy = {m: json.loads(Path(f"reports/eval/{m}/metrics.json").read_text())["gsm"]["accuracy"]
                for m in EVALUATED}
    rows.append({"stage": "gsm accuracy", "accuracy": accuracy})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bf16", choices=["both", "only", "off"], default="both")
    ap.add_argument("--keep", help="run in this folder and keep it (default: a temporary one)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model and a few steps (a CPU check of the script)")
    ap.add_argument("--no-tests", action="store_true", help="skip the GPU-marked tests (pytest -k gpu)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.no_tests:  # skipped without a GPU, so they say nothing on the CPU
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", str(ROOT / "tests"), "-k", "gpu"], cwd=ROOT,
                       check=True)
    if args.bf16 == "both":  # one process per precision: accelerate's state is fixed once per process
        for flag in ("off", "only"):
            rest = (["--keep", args.keep] if args.keep else []) + (["--tiny"] if args.tiny else []) + ["--no-tests"]
            subprocess.run([sys.executable, __file__, "--bf16", flag, *rest], check=True)
        return
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (no GPU: no memory figures)"
    print(f"device: {device}; torch {torch.__version__}")
    results = {}
    for bf16 in {"only": [True], "off": [False]}[args.bf16]:
        folder = Path(args.keep or tempfile.mkdtemp(prefix="gpu_check_")) / ("bf16" if bf16 else "fp32")
        folder.mkdir(parents=True, exist_ok=True)
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            results["bf16" if bf16 else "fp32"] = run_all(bf16, args.tiny)
        finally:
            os.chdir(cwd)
    for precision, rows in results.items():
        print(f"\n{precision}:")
        print(f"{'stage':<22} {'seconds':>8} {'steps':>6} {'steps/s':>8} {'peak GiB':>9}")
        for r in rows:
            if "accuracy" in r:
                print("gsm accuracy: " + ", ".join(f"{m} {a:.3f}" for m, a in r["accuracy"].items()))
                continue
            fmt = lambda v, f: format(v, f) if v is not None else "-"
            print(f"{r['stage']:<22} {r['seconds']:8.1f} {fmt(r['steps'], 'd'):>6} {fmt(r['steps_per_s'], '.2f'):>8} "
                  f"{fmt(r['peak_gib'], '.3f'):>9}")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
