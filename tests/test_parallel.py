"""parallel.run_jobs: results in task order, in-process for one job, errors surface."""

import os

import pytest

from latent_reasoning.parallel import run_jobs, threads_per_job


def test_results_in_task_order_across_processes():
    assert run_jobs(abs, [-3, 2, -1, 5, -4], jobs=3) == [3, 2, 1, 5, 4]
    # every task ran in a spawned process, not this one
    pids = run_jobs(_pid, [0, 1, 2], jobs=3)
    assert os.getpid() not in pids


def _pid(_):
    return os.getpid()


def test_one_job_runs_in_this_process():
    assert run_jobs(_pid, [0, 1], jobs=1) == [os.getpid()] * 2


def test_a_failing_task_raises():
    with pytest.raises(ValueError, match="invalid literal"):
        run_jobs(int, ["1", "not a number", "3"], jobs=2)
    with pytest.raises(ValueError, match="jobs"):
        run_jobs(abs, [1], jobs=0)


def test_threads_per_job():
    assert threads_per_job(2, 1) == 2
    assert threads_per_job(2, 2) == 1
    assert threads_per_job(2, 5) == 1  # more jobs than cores: one thread each
