"""parallel.run_jobs: results in task order, in-process for one job, failures surface."""

import os
import time

import pytest

from latent_reasoning.parallel import JobTraceback, run_jobs, threads_per_job


def test_results_in_task_order_across_processes():
    assert run_jobs(abs, [-3, 2, -1, 5, -4], jobs=3) == [3, 2, 1, 5, 4]
    # every task ran in a spawned process, not this one
    pids = run_jobs(_pid, [0, 1, 2], jobs=3)
    assert os.getpid() not in pids


def _pid(_):
    return os.getpid()


def test_one_job_runs_in_this_process():
    assert run_jobs(_pid, [0, 1], jobs=1) == [os.getpid()] * 2


def test_a_failing_task_raises_with_its_traceback():
    with pytest.raises(ValueError, match="invalid literal") as info:
        run_jobs(int, ["1", "not a number", "3"], jobs=2)
    cause = info.value.__cause__
    assert isinstance(cause, JobTraceback)
    assert "task 1 ('not a number')" in str(cause) and "Traceback" in str(cause)
    with pytest.raises(ValueError, match="jobs"):
        run_jobs(abs, [1], jobs=0)


def _fail_or_sleep(seconds):
    if seconds == 0:
        raise KeyError("fails at once")
    time.sleep(seconds)
    return seconds


@pytest.mark.timeout(120)  # without the terminate, run_jobs would wait out the sleeper
def test_a_failure_terminates_the_other_jobs():
    with pytest.raises(KeyError, match="fails at once"):
        run_jobs(_fail_or_sleep, [600, 0], jobs=2)


def _die_on_zero(task):
    if task == 0:
        os._exit(3)  # as if killed from outside: no result, no exception
    return task


def test_a_process_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="task 0 .* exited with code 3 without a result"):
        run_jobs(_die_on_zero, [0, 1], jobs=2)


def _lambda_result(_):
    return lambda: None  # does not pickle


def test_a_result_that_does_not_pickle_is_an_error():
    with pytest.raises(RuntimeError, match="could not be pickled"):
        run_jobs(_lambda_result, [0, 1], jobs=2)


def test_threads_per_job():
    assert threads_per_job(2, 1) == 2
    assert threads_per_job(2, 2) == 1
    assert threads_per_job(2, 5) == 1  # more jobs than cores: one thread each


def test_jobs_end_when_the_stage_process_is_killed(tmp_path):
    """A SIGKILLed stage leaves no job running (it would go on writing its checkpoint)."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "stage.py"
    script.write_text(
        "import os, sys, time\n"
        "from latent_reasoning.parallel import run_jobs\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from job import work\n"
        "if __name__ == '__main__':\n"
        "    run_jobs(work, [0, 1], jobs=2)\n")
    (tmp_path / "job.py").write_text(
        "import os, time\n"
        "def work(i):\n"
        f"    open(os.path.join({str(tmp_path)!r}, f'pid{{i}}'), 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    pids = [tmp_path / "pid0", tmp_path / "pid1"]
    deadline = time.time() + 60
    while not all(p.exists() and p.read_text() for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    children = [int(p.read_text()) for p in pids]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(os.path.exists(f"/proc/{c}") and
                                         "zombie" not in open(f"/proc/{c}/status").read().lower()
                                         for c in children):
        time.sleep(0.05)
    alive = [c for c in children if os.path.exists(f"/proc/{c}")
             and "zombie" not in open(f"/proc/{c}/status").read().lower()]
    assert not alive, f"jobs still running after their stage was killed: {alive}"
