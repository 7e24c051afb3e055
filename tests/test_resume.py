"""Resume after a kill (resume.py): a training stage killed with SIGKILL and rerun gives the
uninterrupted run's final weights; a checkpoint of other params is never used; a finished
run leaves no checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import run_stage, torchrun, write_params
from latent_reasoning.config import ConfigError, load_params
from latent_reasoning.resume import Checkpoint, fingerprint

STAGE_ARGS = {  # a stage's command line, and the checkpoint / model folders of the run it trains
    "train": (["--method", "cot"], "cot", "models/cot"),
    "coconut": (["--variant", "coconut"], "coconut/coconut", "models/coconut/coconut"),
    "atp": (["--variant", "atp_vae"], "atp/atp_vae", "models/atp/atp_vae"),
    "rl": (["--run", "atp_rl"], "rl/atp_rl", "models/rl/atp_rl"),
    "latent_rl": (["--run", "latent_rl"], "rl/latent_rl", "models/rl/latent_rl"),
}


def stage(cwd: Path, name: str, params: Path, data: Path, kill_at=None, ranks: int = 1):
    """Run a stage in its own process from `cwd` (ranks > 1: that many CPU processes under
    torchrun); with kill_at=(part, step), SIGKILL it (every process of it) as soon as its
    checkpoint is at or past that point. Returns (returncode, output)."""
    argv, run, _ = STAGE_ARGS[name]
    module = "rl" if name == "latent_rl" else name
    launch = [] if ranks == 1 else [*torchrun(ranks), "-m"]
    argv = ["--rl-run" if a == "--run" else a for a in argv]  # torchrun would read --run as its --run-path
    cmd = [sys.executable, *(launch or ["-m"]), f"latent_reasoning.stages.{module}", "--params", str(params),
           "--data", str(data / "data/prepared"), *argv]
    if module != "rl":
        cmd += ["--tokenizer", str(data / "models/tokenizer")]
    if name in ("coconut", "atp"):
        cmd += ["--cot", str(data / "models/cot")]
    if module == "rl":
        cmd += ["--start-root", str(data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"ACCELERATE_USE_CPU": "1"} if ranks > 1 else {})}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_at is not None:
        latest = cwd / ".resume" / run / "LATEST"
        while proc.poll() is None:
            if latest.exists():
                _, part, step = latest.read_text().strip().split("-")
                if (int(part), int(step)) >= kill_at:
                    kill_tree(proc.pid)
                    break
            time.sleep(0.01)
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it at once, as a lost machine would
    (torchrun's workers are in sessions of their own: a process-group kill misses them)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:  # gone already
                pass
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Prepared data, a tokenizer, a 6-step CoT model, and atp_vae and coconut models to start from."""
    root = tmp_path_factory.mktemp("start")
    params = write_params(root / "params.yaml")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        for name, *argv in [("prepare",), ("tokenizer",), ("train", "--method", "cot"), ("atp", "--variant", "atp_vae"),
                           ("coconut", "--variant", "coconut")]:
            run_stage(mp, name, "--params", params, *argv)
    finally:
        mp.undo()
    return root


# (stage, its params, where to kill it: (part, step) of its checkpoint)
CASES = [
    ("train", {"train": {"max_steps": 300, "eval_every": 100}}, (0, 50)),
    # Coconut's curriculum: killed in its second stage (part 1), after the first stage's end
    ("coconut", {"coconut": {"steps_per_stage": 40, "final_stage_steps": 60, "eval_every": 20}}, (1, 10)),
    ("atp", {"coconut": {"steps_per_stage": 20, "final_stage_steps": 40, "eval_every": 20}}, (1, 10)),
    ("rl", {"rl": {"steps": 12}}, (0, 4)),
    # Latent RL: its value head (fitted before the loop) and the critic's optimizer come back too
    ("latent_rl", {"rl": {"steps": 12}}, (0, 4)),
]


@pytest.mark.parametrize("name, overrides, kill_at", CASES, ids=[c[0] for c in CASES])
def test_a_killed_stage_reruns_to_the_uninterrupted_weights(prepared, tmp_path, name, overrides, kill_at):
    kill_and_rerun(prepared, tmp_path, name, overrides, kill_at, ranks=1)


# data parallel: 2 gloo ranks, each restoring its own RNG file; the SFT loop and an RL run
@pytest.mark.parametrize("name, overrides, kill_at", [CASES[0], CASES[3]], ids=["train", "rl"])
def test_a_killed_data_parallel_run_reruns_to_the_uninterrupted_weights(prepared, tmp_path, name, overrides, kill_at):
    kill_and_rerun(prepared, tmp_path, name, overrides, kill_at, ranks=2)


def kill_and_rerun(prepared, tmp_path, name, overrides, kill_at, ranks):
    every = 2 if name in ("rl", "latent_rl") else 10
    params = write_params(tmp_path / "params.yaml", base={"checkpoint_every": every}, **overrides)
    _, run, model_dir = STAGE_ARGS[name]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    rc, out = stage(whole, name, params, prepared, ranks=ranks)
    assert rc == 0, out[-3000:]

    rc, out = stage(killed, name, params, prepared, kill_at=kill_at, ranks=ranks)
    assert rc == -signal.SIGKILL, f"the run ended (rc {rc}) before it could be killed:\n{out[-2000:]}"
    assert (killed / ".resume" / run / "LATEST").exists()
    rc, out = stage(killed, name, params, prepared, ranks=ranks)
    assert rc == 0, out[-3000:]
    assert "resume: continuing from" in out, out[-2000:]

    # every weight file (the model; ATP's heads and decoder; Latent RL's value head) bit-identical
    files = sorted(p.relative_to(whole / model_dir) for p in (whole / model_dir).rglob("*.safetensors"))
    assert Path("model.safetensors") in files
    for f in files:
        a, b = load_file(whole / model_dir / f), load_file(killed / model_dir / f)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (f, key)
    # the DVCLive logs cover every step once, as the uninterrupted run's do
    live = "reports/train/" + ("cot" if name == "train" else run)
    metric = "rl/reward" if name == "rl" else "rl/value" if name == "latent_rl" else "train/loss"
    rows = lambda d: (d / live / f"plots/metrics/{metric}.tsv").read_text().splitlines()
    assert rows(killed) == rows(whole)
    # a finished run leaves no checkpoint behind
    assert not (killed / ".resume").exists() and not (whole / ".resume").exists()


def test_a_checkpoint_of_other_params_or_inputs_is_discarded(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    old = Checkpoint(tmp_path, "run", fingerprint({"lr": 0.1}), every=1)
    old.save(0, 3, {"model": model}, {"optimizer": opt}, {"step": 3})
    assert old.path.exists()
    assert Checkpoint(tmp_path, "run", fingerprint({"lr": 0.1}), every=1).load()["step"] == 3
    new = Checkpoint(tmp_path, "run", fingerprint({"lr": 0.2}), every=1)
    assert new.load() is None and not new.path.exists()
    # the content of an input file is part of the fingerprint, not only its name
    f = tmp_path / "train.jsonl"
    f.write_text("a\n")
    before = fingerprint({}, paths=[f])
    f.write_text("b\n")
    assert fingerprint({}, paths=[f]) != before


def test_a_half_written_snapshot_is_never_read(tmp_path):
    """LATEST switches only once a snapshot is whole: a snapshot folder without it (a kill
    while writing) leaves the previous checkpoint in force."""
    model = torch.nn.Linear(2, 2)
    root = tmp_path / ".resume"
    ck = Checkpoint(root, "stage/run", "f", every=1)
    ck.save(0, 1, {"model": model}, {}, {"step": 1})
    (ck.path / "snap-0-2").mkdir()  # what a kill during the next save leaves
    assert Checkpoint(root, "stage/run", "f", every=1).load()["step"] == 1
    ck.finish()  # the run's folder goes, and the folders it leaves empty up to the root
    assert not root.exists() and tmp_path.exists()


def test_checkpoint_params_are_validated(tmp_path):
    path = write_params(tmp_path / "params.yaml", base={"checkpoint_every": -1})
    with pytest.raises(ConfigError, match="base.checkpoint_every"):
        load_params(path)


def test_a_second_run_of_one_name_is_refused_while_the_first_holds_the_folder(tmp_path):
    """The lock is a process's: another process holding it (a run of the same name and
    resume_dir) makes load() an error that names the folder; once that process is killed
    (SIGKILL), the lock is free and the run goes ahead."""
    root = tmp_path / ".resume"
    lock = root / "atp" / "atp_vae.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, os, sys, time
os.makedirs({str(lock.parent)!r}, exist_ok=True)
fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match="atp_vae.*resume_dir"):
            Checkpoint(root, "atp/atp_vae", "f", every=1).load()
        # another name in the same folder is not held up
        other = Checkpoint(root, "atp/atp_no_vae", "f", every=1)
        assert other.load() is None
        other.finish()
    finally:
        holder.kill()
        holder.wait()
    ck = Checkpoint(root, "atp/atp_vae", "f", every=1)
    assert ck.load() is None  # the killed holder's lock went with it
    ck.save(0, 1, {"model": torch.nn.Linear(2, 2)}, {}, {"step": 1})
    ck.finish()
    assert not lock.exists() and not root.exists()  # nothing left behind
