"""Why the `coconut` stage trains its variants side by side: training throughput on this
machine's cores, as one process using every thread against one process per core.

Each worker trains the same small model on fixed batches of the default task: a CoT-SFT
step (full teacher-forced sequence) and a final-stage Coconut step (6 thoughts, cached
passes), alternating. Both layouts do the same number of steps per round; rounds
alternate between the layouts, so drift in machine speed hits both alike.

    python bench/parallel_training.py [--threads 2] [--steps 20] [--rounds 3]
"""

import argparse
import multiprocessing
import random
import time

import torch

from latent_reasoning import coconut
from latent_reasoning.latent import latent_forward
from setup import bench_setup


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
    ap.add_argument("--steps", type=int, default=20, help="steps per process per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    one, side_by_side = [], []
    for _ in range(args.rounds):
        # one process with every thread: `threads` x `steps` steps, one after another
        with ctx.Pool(1) as pool:
            began, ended = pool.apply(run_steps, (args.threads, args.threads * args.steps))
        one.append(args.threads * args.steps / (ended - began))
        # one one-thread process per core, `steps` each, started together
        with ctx.Manager() as manager:
            start = manager.Barrier(args.threads)
            with ctx.Pool(args.threads) as pool:
                spans = pool.map(_worker, [(1, args.steps, start)] * args.threads)
        side_by_side.append(args.threads * args.steps / (max(e for _, e in spans) - min(b for b, _ in spans)))
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(f"training steps per second (batch 32, CoT and final-stage Coconut steps alternating), "
          f"{args.rounds} alternating rounds:")
    print(f"  one process, {args.threads} threads:          {median(one):6.2f}  "
          f"(rounds: {', '.join(f'{x:.2f}' for x in one)})")
    print(f"  {args.threads} processes, 1 thread each:      {median(side_by_side):6.2f}  "
          f"(rounds: {', '.join(f'{x:.2f}' for x in side_by_side)})")
    print(f"  side by side / one process: {median(side_by_side) / median(one):.2f}x  "
          f"(per round: {', '.join(f'{b / a:.2f}' for a, b in zip(one, side_by_side))})")


if __name__ == "__main__":
    main()
