"""Why the `coconut` stage trains its variants side by side: training throughput on this
machine's cores, as one process using every thread against several one-thread processes
(one per core, and more processes than cores).

Each worker trains the same small model on fixed batches of the default task: a CoT-SFT
step (full teacher-forced sequence) and a final-stage Coconut step (6 thoughts, cached
passes), alternating. Every layout does the same number of steps per round in total;
rounds alternate between the layouts, so drift in machine speed hits all alike.

    python bench/parallel_training.py [--threads 2] [--processes 2,3] [--steps 24] [--rounds 3]
"""

import argparse
import multiprocessing
import random
import time

import torch

from latent_reasoning import coconut
from latent_reasoning.latent import latent_forward
from setup import bench_setup, median


def run_steps(threads: int, steps: int, start=None) -> tuple[float, float]:
    """Build the model and batches, wait at `start` (a barrier) if given, then time
    `steps` training steps; returns (start time, end time) on the perf counter."""
    data, tok, model = bench_setup(threads, test_size=10)
    model.train()
    cfg = coconut.CoconutConfig()
    examples = data["train"][:32]
    cot = coconut.make_batch(tok, examples, "coconut", 0, cfg, random.Random(0))  # stage 0: the full CoT
    final = coconut.make_batch(tok, examples, "coconut", cfg.final_stage, cfg, random.Random(0))
    plain = {"input_ids": cot.input_ids, "attention_mask": cot.attention_mask, "labels": cot.labels}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(i):
        loss = model(**plain).loss if i % 2 == 0 else latent_forward(model, final).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(4):  # warm-up
        step(i)
    if start is not None:
        start.wait()
    began = time.perf_counter()
    for i in range(steps):
        step(i)
    return began, time.perf_counter()


def _worker(args):
    threads, steps, start = args
    return run_steps(threads, steps, start)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2, help="cores to use")
    ap.add_argument("--processes", default="2,3", help="one-thread process counts to compare, comma-separated")
    ap.add_argument("--steps", type=int, default=24, help="steps per round, in total (divisible by every count)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    if any(args.steps % n for n in counts):
        ap.error(f"--steps {args.steps} must be divisible by every process count in {counts}")
    ctx = multiprocessing.get_context("spawn")
    rates = {"one": [], **{n: [] for n in counts}}
    for _ in range(args.rounds):
        # one process with every thread, all the steps one after another
        with ctx.Pool(1) as pool:
            began, ended = pool.apply(run_steps, (args.threads, args.steps))
        rates["one"].append(args.steps / (ended - began))
        # n one-thread processes sharing the steps, started together
        for n in counts:
            with ctx.Manager() as manager:
                start = manager.Barrier(n)
                with ctx.Pool(n) as pool:
                    spans = pool.map(_worker, [(1, args.steps // n, start)] * n)
            rates[n].append(args.steps / (max(e for _, e in spans) - min(b for b, _ in spans)))
    print(f"training steps per second (batch 32, CoT and final-stage Coconut steps alternating), "
          f"{args.rounds} alternating rounds, {args.steps} steps per layout per round:")
    print(f"  one process, {args.threads} threads:    {median(rates['one']):6.2f}  "
          f"(rounds: {', '.join(f'{x:.2f}' for x in rates['one'])})")
    for n in counts:
        print(f"  {n} processes, 1 thread each: {median(rates[n]):6.2f}  "
              f"(rounds: {', '.join(f'{x:.2f}' for x in rates[n])});  "
              f"/ one process: {median(rates[n]) / median(rates['one']):.2f}x "
              f"(per round: {', '.join(f'{b / a:.2f}' for a, b in zip(rates['one'], rates[n]))})")


if __name__ == "__main__":
    main()
