"""Resume after a kill: a training run's state, written every `base.checkpoint_every` steps.

A run (one SFT method, one Coconut or ATP variant, one RL run) keeps its checkpoint in
`<base.resume_dir>/<name>/` (default `.resume/`, beside the repo's outputs: `dvc repro`
deletes a stage's outputs before it runs the stage, never this folder). A checkpoint holds

    state.pt       the modules' and optimizers' state dicts, where the run is (`part`: the
                   curriculum stage's index, or 0; `step`: steps done within it), the best
                   validation so far
    rng-<rank>.pt  each rank's torch (and CUDA) and python `random` states, and what the
                   caller tracks (its random.Random, torch.Generator, lists such as the
                   per-stage history): ranks may differ there (each its own rollout noise)
    dirs/<i>/      copies of the run's output folders as they were (the best checkpoint so
                   far, the DVCLive logs): dvc repro deleted them before the rerun

A rerun with the same fingerprint (the configs and the content of the input files the
stage names) restores the folders and continues from the step after the checkpoint; the
data position is recovered by drawing the batches already used again (their indices
only), so the rerun gives the same final model as an uninterrupted run. A checkpoint
with another fingerprint is deleted, never used; a finished run deletes its own.

Writes are atomic: a snapshot folder is written whole, then the file LATEST names it, so
a kill at any moment leaves the previous checkpoint or the new one, never half of one.
Data parallel: rank 0 writes everything but the rank's RNG file, every rank reads.

One run at a time per folder: load() takes an exclusive lock (`<name>.lock`, flock) that
the process holds until finish() or its death (a SIGKILL releases it too). A second run
of the same name and resume_dir, started while the first runs, stops with an error
instead of each discarding or overwriting the other's checkpoints.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import torch

from .parallel import is_main_process


def fingerprint(*configs, paths=()) -> str:
    """A hash of configs (dataclasses, dicts, numbers, strings) and of the content of files
    (folders: every file under them, in order)."""
    h = hashlib.sha256()
    for cfg in configs:
        value = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
        h.update(json.dumps(value, sort_keys=True, default=str).encode())
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _barrier():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_HELD: dict[Path, int] = {}  # lock file -> the open descriptor holding its lock, in this process


def _lock(path: Path) -> None:
    """Hold an exclusive lock on `path` (created if missing) for this process, or raise."""
    if path in _HELD:  # this process holds it already (a stage rerun in one process, as tests do)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"resume: another process is running {path.with_suffix('')} (it holds {path}); two runs "
                           "of one name sharing a resume folder would discard or overwrite each other's "
                           "checkpoints: wait for it, or give this run its own base.resume_dir") from None
    _HELD[path] = fd


def _unlock(path: Path) -> None:
    fd = _HELD.pop(path, None)
    if fd is not None:
        path.unlink(missing_ok=True)  # gone before the lock: a waiting run then takes a fresh file
        os.close(fd)


class Checkpoint:
    """One run's resumable state. `every` 0 turns writing off (a checkpoint left by an
    earlier run is still honoured or discarded by its fingerprint)."""

    def __init__(self, root: str | Path, name: str, fingerprint: str, every: int, dirs=()):
        self.root, self.path = Path(root), Path(root) / name
        self.lock = (self.path.parent / f"{self.path.name}.lock").absolute()
        self.fingerprint, self.every = fingerprint, every
        self.dirs = [Path(d) for d in dirs]
        self.tracked = {}  # name -> a random.Random, torch.Generator or list to save and restore
        self.state = None  # the loaded state, once load() found one

    def track(self, **objects) -> None:
        self.tracked.update(objects)

    def due(self, step: int, last: bool) -> bool:
        return self.every > 0 and (step % self.every == 0 or last)

    # ---- reading -------------------------------------------------------------------
    def load(self) -> dict | None:
        """The latest checkpoint (and its output folders restored), or None. Call before
        opening the run's DVCLive folder (it is one of the restored ones). Takes the run's
        lock first (rank 0): an error if another process holds it."""
        if is_main_process():
            _lock(self.lock)
        latest = self.path / "LATEST"
        if not latest.exists():
            return None
        snap = self.path / latest.read_text().strip()
        if (snap / "fingerprint").read_text().strip() != self.fingerprint:
            print(f"resume: discarding the checkpoint in {self.path}: it was written with other params "
                  "or inputs", flush=True)
            _barrier()
            if is_main_process():
                shutil.rmtree(self.path)
            _barrier()
            return None
        state = torch.load(snap / "state.pt", map_location="cpu", weights_only=False)  # load_state_dict places it
        rng_file = snap / f"rng-{_rank()}.pt"
        if not rng_file.exists():
            raise FileNotFoundError(f"resume: {rng_file} is missing: the checkpoint in {self.path} was written "
                                    "by fewer processes than this run has")
        state["rng"] = torch.load(rng_file, map_location="cpu", weights_only=False)
        _barrier()
        if is_main_process():
            for i, d in enumerate(self.dirs):
                if d.exists():
                    shutil.rmtree(d)
                if (snap / "dirs" / str(i)).exists():
                    shutil.copytree(snap / "dirs" / str(i), d)
        _barrier()
        for key, obj in self.tracked.items():
            _set(obj, state["rng"]["tracked"][key])
        self.state = state
        print(f"resume: continuing from {snap} (part {state['part']}, step {state['step']})", flush=True)
        return state

    def resuming(self, part: int) -> bool:
        """Whether `part` (a curriculum stage's index) continues from the checkpoint."""
        return self.state is not None and self.state["part"] == part

    def skips(self, part: int) -> bool:
        """Whether `part` was finished before the checkpoint."""
        return self.state is not None and self.state["part"] > part

    def restore(self, modules: dict, optimizers: dict) -> dict:
        """Load the checkpoint's weights, optimizer states and RNG states; returns its meta."""
        for key, module in modules.items():
            module.load_state_dict(self.state["modules"][key])
        for key, opt in optimizers.items():
            opt.load_state_dict(self.state["optimizers"][key])
        set_rng_state(self.state["rng"])
        return self.state["meta"]

    # ---- writing -------------------------------------------------------------------
    def save(self, part: int, step: int, modules: dict, optimizers: dict, meta: dict) -> None:
        """Write a checkpoint after `step` steps of `part` (every rank calls this)."""
        snap = self.path / f"snap-{part}-{step}"
        if is_main_process():
            if snap.exists():
                shutil.rmtree(snap)
            snap.mkdir(parents=True)
        _barrier()
        torch.save({**rng_state(), "tracked": {k: _get(o) for k, o in self.tracked.items()}},
                   snap / f"rng-{_rank()}.pt")
        if is_main_process():
            torch.save({"part": part, "step": step,
                        "modules": {k: m.state_dict() for k, m in modules.items()},
                        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                        "meta": meta}, snap / "state.pt")
            for i, d in enumerate(self.dirs):
                if d.exists():
                    shutil.copytree(d, snap / "dirs" / str(i))
            (snap / "fingerprint").write_text(self.fingerprint + "\n")
        _barrier()
        if is_main_process():
            tmp = self.path / "LATEST.tmp"
            tmp.write_text(snap.name + "\n")
            os.replace(tmp, self.path / "LATEST")  # the switch to the new checkpoint is atomic
            for old in self.path.glob("snap-*"):
                if old != snap:
                    shutil.rmtree(old)
        _barrier()

    def finish(self) -> None:
        """The run is done and its outputs written: its checkpoint must not outlive it."""
        _barrier()
        if is_main_process():
            _unlock(self.lock)
            if self.path.exists():
                shutil.rmtree(self.path)
            parent = self.path.parent  # empty folders up to <root> go too (the lock's too)
            while parent.is_relative_to(self.root) and parent.exists() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        self.state = None


def _get(obj):
    if isinstance(obj, random.Random):
        return obj.getstate()
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, (list, dict)):
        return json.loads(json.dumps(obj))  # a copy
    raise TypeError(f"resume: cannot track a {type(obj).__name__}")


def _set(obj, value):
    if isinstance(obj, random.Random):
        obj.setstate(value)
    elif isinstance(obj, torch.Generator):
        obj.set_state(value)
    elif isinstance(obj, list):
        obj[:] = value
    elif isinstance(obj, dict):
        obj.clear()
        obj.update(value)


def for_run(base, name: str, configs: tuple, paths=(), dirs=()) -> Checkpoint:
    """The checkpoint of run `name` under base.resume_dir, fingerprinted by the run's
    configs and input files; load() it before opening the run's logs."""
    return Checkpoint(base.resume_dir, name, fingerprint(base.seed, *configs, paths=paths),
                      base.checkpoint_every, dirs)
