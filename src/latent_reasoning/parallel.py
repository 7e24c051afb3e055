"""Independent training runs side by side, one process each.

This project's models are small: their matmuls cannot keep two threads busy, so on the
2-core machine two one-thread processes do about 1.3x the training steps per second of
one two-thread process (bench/parallel_training.py). The coconut stage hands its
independent variants to `run_jobs`.

More jobs than cores is allowed: every process then gets one thread and the cores are
shared. In the bench, three or five one-thread processes on two cores do about as many
steps per second as two, and no core idles while the last run finishes alone.
A run's thread count depends on `threads` and `jobs` only, never on timing, so its result
is reproducible; any jobs >= threads gives every run one thread and the same results.

Why not multiprocessing.Pool: a CI run hung in the test where a task fails, that is in
Pool's failure path (terminate() and its three handler threads); 330 runs here did not
hang, so the cause is not pinned down. And a worker that dies without a result (killed
when out of memory) leaves Pool waiting forever: checked. Here each task gets its own
process and pipe, a failure or a death is seen at once, and the other processes are
terminated."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from multiprocessing.connection import wait
from typing import Callable


def world_size() -> int:
    """Processes of a data-parallel run (accelerate launch, torchrun set WORLD_SIZE); 1 in
    a plain run. Read from the environment: creating accelerate's state here, before the
    training loop's Accelerator, would fix it as a single process."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in a plain run, and on rank 0 of a data-parallel one: the process that writes."""
    return int(os.environ.get("RANK", "0")) == 0


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def init_distributed() -> None:
    """Join the data-parallel process group where a launcher started several processes
    (the training loop's Accelerator does this itself; the RL stage has none)."""
    import torch

    from .devices import pick_device

    if world_size() > 1 and not torch.distributed.is_initialized():
        device = pick_device()  # this rank's GPU (LOCAL_RANK), or the CPU
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's collectives run on the current device
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shard(items: list, what: str) -> list:
    """This rank's contiguous share of `items` (all of them in a plain run); the share
    sizes must be equal, so that a mean over ranks is the mean over the items."""
    world = world_size()
    if len(items) % world:
        raise ValueError(f"{what}: {len(items)} do not split evenly over {world} processes")
    share = len(items) // world
    return items[rank() * share: (rank() + 1) * share]


def sum_over_ranks(value: float) -> float:
    import torch

    if world_size() == 1:
        return value
    # NCCL reduces CUDA tensors only (gloo: CPU ones)
    nccl = torch.distributed.get_backend() == "nccl"
    t = torch.tensor([float(value)], dtype=torch.float64,
                     device=torch.device("cuda", torch.cuda.current_device()) if nccl else "cpu")
    torch.distributed.all_reduce(t)
    return t.item()


def finite_on_every_rank(value) -> bool:
    """Whether `value` (a loss) is finite on every rank: one rank's NaN must stop them all,
    or the others would wait for it forever at the next all-reduce."""
    import torch

    finite = bool(torch.isfinite(value).all())
    return finite if world_size() == 1 else sum_over_ranks(float(finite)) == world_size()


def rank_share(count: float) -> float:
    """The weight of this rank's loss when it is a mean over its `count` items (tokens,
    actions, positions): its share of every rank's items, times N. average_gradients then
    takes the mean over the ranks, which makes it the mean over all the items."""
    return count * world_size() / max(sum_over_ranks(count), 1.0)


def mean_over_ranks(values: dict) -> dict:
    """Each value averaged over the ranks (every rank gets the same dict back)."""
    return {k: sum_over_ranks(v) / world_size() for k, v in values.items()}


def gather(obj) -> list:
    """Every rank's `obj`, in rank order, on every rank ([obj] in a plain run)."""
    import torch

    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


BUCKET_MB = 25  # gradients all-reduced together (DDP's default bucket size)


def average_gradients(model, world: int) -> None:
    """Every rank's gradients replaced by their mean over the ranks (what DDP computes). A
    parameter that some rank's batch reached and this one's did not counts as a zero
    gradient here; one that no rank reached keeps no gradient (the optimizer skips it, as
    in one process). The gradients travel in buckets of one dtype and at most `bucket_mb`
    (one all-reduce per bucket, as DDP's buckets: one call per parameter cost this machine's
    2-process step a fifth of its time in bench/data_parallel.py)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    reached = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    torch.distributed.all_reduce(reached)  # one call: every rank then makes the same calls
    live = []
    for p, anyone in zip(params, reached.tolist()):
        if anyone:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            live.append(p)
    limit = BUCKET_MB * 2**20
    while live:
        dtype, size, bucket = live[0].grad.dtype, 0, []
        while live and live[0].grad.dtype == dtype and (not bucket or size + live[0].grad.nbytes <= limit):
            size += live[0].grad.nbytes
            bucket.append(live.pop(0))
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        torch.distributed.all_reduce(flat)
        flat /= world
        offset = 0
        for p in bucket:
            p.grad.copy_(flat[offset: offset + p.grad.numel()].view_as(p.grad))
            offset += p.grad.numel()


def barrier() -> None:
    import torch

    if world_size() > 1:
        torch.distributed.barrier()


def threads_per_job(threads: int, jobs: int) -> int:
    return max(1, threads // jobs)


class JobTraceback(Exception):
    """The traceback of a job's exception, as text from its process (the cause of the
    exception `run_jobs` re-raises)."""


def run_jobs(worker: Callable, tasks: list, jobs: int) -> list:
    """worker(task) for every task, `jobs` processes at a time; results in task order.

    `worker` must be a module-level function (it is pickled into spawned processes).
    jobs == 1 runs the tasks one after another in this process. If a task raises, its
    exception is raised here (its traceback as the cause) and the other processes are
    terminated; a process that dies without a result raises RuntimeError."""
    if jobs < 1:
        raise ValueError(f"run_jobs: jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(tasks) <= 1:
        return [worker(task) for task in tasks]
    # spawn, not fork: a forked child would inherit this process's thread pools
    context = multiprocessing.get_context("spawn")
    waiting = list(enumerate(tasks))
    running = {}  # the reading end of each job's pipe -> (task index, process)
    results = {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i, task = waiting.pop(0)
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_run_job, args=(worker, task, writer), daemon=True)
                process.start()
                # the child now holds the only writing end, so the reader sees EOF if it dies
                writer.close()
                running[reader] = (i, process)
            for reader in wait(list(running)):
                i, process = running.pop(reader)
                try:
                    ok, value = reader.recv()
                except EOFError:  # the process ended without sending anything
                    ok, value = None, None
                finally:
                    reader.close()
                process.join()
                if ok is None:
                    raise RuntimeError(f"run_jobs: the process of task {i} ({tasks[i]!r}) exited "
                                       f"with code {process.exitcode} without a result "
                                       "(killed from outside, e.g. out of memory?)")
                if not ok:
                    error, text = value
                    raise error from JobTraceback(f"in the process of task {i} ({tasks[i]!r}):\n{text}")
                results[i] = value
    finally:
        for reader, (_, process) in running.items():  # left running only if a task failed
            process.terminate()
            process.join()
            reader.close()
    return [results[i] for i in range(len(tasks))]


def _die_with_parent() -> None:
    """End this job's process when the stage's process ends, even killed (SIGKILL, out of
    memory): an orphan would go on training and writing its resume checkpoint beside the
    rerun's. Linux only (prctl PR_SET_PDEATHSIG); elsewhere daemon processes end with a
    parent that exits normally."""
    import sys

    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before that call
            os._exit(1)


def _run_job(worker, task, writer):  # runs in the child process
    _die_with_parent()
    text = ""  # the task's traceback, if it raised
    try:
        outcome = (True, worker(task))
    except BaseException as error:  # noqa: BLE001 (every failure goes back to the parent)
        text = traceback.format_exc()
        outcome = (False, (error, text))
    try:
        writer.send(outcome)
    except Exception:  # the result or the exception does not pickle: send why, as text
        writer.send((False, (RuntimeError("run_jobs: the task's result or exception could not be pickled"),
                             text + traceback.format_exc())))
    writer.close()


def _train_task(task):  # a job: one variant (module level, so that it pickles)
    train_variant, variant, args, threads = task
    return variant, train_variant(variant, args, threads)


def train_variants(train_variant: Callable, variants: list[str], args, threads: int, jobs: int,
                   summary_path) -> dict:
    """`train_variant(variant, args, threads) -> summary` for every variant, `jobs` at a
    time, in the order listed; writes {variant: summary} as JSON to `summary_path`.
    Under data parallel (accelerate launch, N ranks) the variants train one after another,
    each on every rank, and rank 0 writes."""
    import json
    from pathlib import Path

    if world_size() > 1:
        jobs = 1  # the ranks are the parallelism; a process pool per rank would not know them
    summary = dict(run_jobs(_train_task, [(train_variant, v, args, threads) for v in variants], jobs))
    if not is_main_process():
        return summary
    Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    for variant, s in summary.items():
        print(f"{variant}: best final-stage val accuracy {s['best_val_accuracy']:.3f}, {s['train_minutes']:.1f} min")
    return summary


def variant_stage_args(doc: str, choices, section: str, out: str, argv=None):
    """The command line of a stage that trains variants side by side from the CoT-SFT
    model (`coconut`, `atp`): which variants, and where inputs and outputs live."""
    import argparse

    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--variant", action="append", choices=choices,
                    help=f"train only this variant (repeatable); default: every one in {section}.variants")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--cot", default="models/cot", help="the CoT-SFT model to start from")
    ap.add_argument("--tokenizer", default="models/tokenizer")
    ap.add_argument("--out", default=out, help="one model folder per variant")
    ap.add_argument("--live-dir", default=f"reports/train/{section}", help="one DVCLive folder per variant")
    ap.add_argument("--summary", default=f"reports/train/{section}.json")
    return ap.parse_args(argv)
