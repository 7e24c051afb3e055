"""Independent training runs side by side, one process each.

This project's models are small: their matmuls cannot keep two threads busy, so on the
2-core machine two one-thread processes do about 1.3x the training steps per second of
one two-thread process (bench/parallel_training.py). The coconut stage hands its
independent variants to `run_jobs`.

More jobs than cores is allowed: every process then gets one thread and the cores are
shared. In the bench, three or five one-thread processes on two cores do about as many
steps per second as two, and no core idles while the last run finishes alone. A run's thread count depends on `threads` and `jobs` only, never on
timing, so its result is reproducible; any jobs >= threads gives every run one thread
and the same results.
"""

from __future__ import annotations

import multiprocessing
from typing import Callable


def threads_per_job(threads: int, jobs: int) -> int:
    return max(1, threads // jobs)


def run_jobs(worker: Callable, tasks: list, jobs: int) -> list:
    """worker(task) for every task, `jobs` processes at a time; results in task order.

    `worker` must be a module-level function (it is pickled into spawned processes).
    jobs == 1 runs the tasks one after another in this process. If one task fails, the
    error is raised at once and the other processes are terminated."""
    if jobs < 1:
        raise ValueError(f"run_jobs: jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(tasks) <= 1:
        return [worker(task) for task in tasks]
    # spawn, not fork: a forked child would inherit this process's thread pools
    with multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks))) as pool:
        done = dict(pool.imap_unordered(_indexed, [(worker, i, task) for i, task in enumerate(tasks)]))
    return [done[i] for i in range(len(tasks))]


def _indexed(item):
    worker, i, task = item
    return i, worker(task)
