"""Data-parallel training throughput: examples per second of the shared training loop
(train_loop.train, CoT-SFT steps on the default model, global batch 32) in one process and
in N processes under torchrun (gloo on CPU), and what bounds it.

Each layout trains the same global batches for `--steps` steps; the time is the loop's
own (model built and data ready before the clock starts; the first 3 steps are warm-up and
not timed). A layout's threads are fixed: one process gets `--threads`, each of N ranks
threads // N (at least 1), so every layout uses the same cores. The gradient all-reduce
(parallel.average_gradients) is timed on its own in the N-process run: the share of each
step it takes is what data parallel costs over one process.

    python bench/data_parallel.py [--processes 2] [--steps 40] [--threads 2]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from latent_reasoning import parallel
from latent_reasoning.config import TrainConfig
from latent_reasoning.formats import collate, encode_examples
from setup import bench_setup

WARMUP = 3


def worker(steps: int, threads: int, out: Path):
    """Run under torchrun (or alone): train, time steps after the warm-up, write figures."""
    from latent_reasoning import train_loop

    data, tok, model = bench_setup(threads, test_size=10)
    encoded = encode_examples(tok, data["train"], "cot")
    cfg = TrainConfig(max_steps=steps + WARMUP, batch_size=32, lr=1e-3, warmup_steps=1, eval_every=10**6,
                      log_every=10**6)
    stamps, reduce_times = [], []
    real_average = parallel.average_gradients

    def timed_average(m, world):  # the all-reduce's share of a step
        t = time.perf_counter()
        real_average(m, world)
        reduce_times.append(time.perf_counter() - t)

    train_loop.average_gradients = timed_average

    def make_batch(seqs):
        stamps.append(time.perf_counter())  # one per step, before its forward
        return collate(seqs, tok.pad_token_id)

    with tempfile.TemporaryDirectory() as tmp:
        train_loop.train(model, encoded, cfg, make_batch=make_batch, out_dir=Path(tmp) / "m",
                         live_dir=Path(tmp) / "live", save=lambda m, d: None)
    end = time.perf_counter()
    timed = end - stamps[WARMUP]
    if parallel.is_main_process():
        out.write_text(json.dumps({"seconds": timed, "steps": steps,
                                   "reduce_seconds": sum(reduce_times[WARMUP:])}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def layout(processes: int, threads: int, steps: int) -> dict:
    per_rank = max(1, threads // processes)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        launch = [] if processes == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                                            "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": str(per_rank),
               "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        subprocess.run([sys.executable, *launch, __file__, "--worker", str(out), "--steps", str(steps),
                        "--threads", str(per_rank)], env=env, check=True, capture_output=True)
        figures = json.loads(out.read_text())
    figures.update(processes=processes, threads_per_process=per_rank,
                   examples_per_second=32 * steps / figures["seconds"])
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.steps, args.threads, Path(args.worker))
        return
    print(f"CoT-SFT steps of the default model (4 layers x 128), global batch 32, {args.steps} timed steps, "
          f"{args.threads} threads in all; torch {torch.__version__}, {os.cpu_count()} CPUs")
    one = layout(1, args.threads, args.steps)
    many = layout(args.processes, args.threads, args.steps)
    for f in (one, many):
        print(f"{f['processes']} process(es) x {f['threads_per_process']} thread(s): "
              f"{f['examples_per_second']:.1f} examples/s ({f['seconds'] / f['steps'] * 1000:.0f} ms per step)")
    share = many["reduce_seconds"] / many["seconds"]
    print(f"ratio {args.processes} / 1 process: {many['examples_per_second'] / one['examples_per_second']:.2f}x")
    print(f"gradient all-reduce: {many['reduce_seconds'] / many['steps'] * 1000:.1f} ms per step, "
          f"{share:.0%} of the {args.processes}-process step")
    bound = ("the cores: both layouts compute on the same cores, and the all-reduce adds its share"
             if share < 0.25 else "the all-reduce (gloo over loopback): it takes a large share of each step")
    print(f"bound by {bound}")


if __name__ == "__main__":
    main()
