"""The one training loop every method uses.

A method supplies `make_batch(examples) -> batch` and optionally `loss_fn(model, batch)`
(default: the model's own teacher-forced loss) and `validate(model) -> accuracy`. The loop:
AdamW, linear warmup then cosine decay, gradient clipping, optional bf16, validation
every `eval_every` steps with the best checkpoint kept, DVCLive metrics, a progress bar.
Accelerate places everything (CPU here, a GPU where there is one).

Data parallel: under `accelerate launch --num_processes N` (or torchrun) `cfg.batch_size` is
the global batch. Every rank draws the same global batches (the same seeded generator) and
trains on its own slice of each, batch_size / N rows; the gradients are averaged over the
ranks after backward (parallel.average_gradients, as DDP would). Where the loss is a mean
over target tokens (SFT, Coconut: `n_targets`), each rank's loss is weighted by its share
of the global batch's targets (parallel.rank_share), so that N ranks compute the same
update as one process with the whole batch. Rank 0 alone validates, saves and logs; the
others wait for it.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from dvclive import Live
from tqdm import tqdm

from .config import ConfigError, TrainConfig
from .formats import IGNORE
from .latent import LatentBatch
from .parallel import average_gradients, finite_on_every_rank, is_main_process, rank_share
from .resume import Checkpoint


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * cfg.min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def batches(examples: list, batch_size: int, seed: int, length: Callable | None = None, window: int = 32):
    """Endless shuffled batches, a fresh permutation every epoch (deterministic).

    With `length`, examples are sorted by length within windows of `window` batches
    before cutting, and the batches shuffled: rows of a batch have similar lengths,
    so less compute goes to padding, while every batch is still a random draw."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        if length is not None:
            span = batch_size * window
            order = [j for w in range(0, len(order), span)
                     for j in sorted(order[w: w + span], key=lambda j: length(examples[j]))]
        # drop the ragged last batch (a data set smaller than a batch is one batch)
        epoch = [order[i: i + batch_size] for i in range(0, max(1, len(order) - batch_size + 1), batch_size)]
        rng.shuffle(epoch)
        for batch in epoch:
            yield [examples[j] for j in batch]


def default_loss(model, batch):
    return model(**batch).loss


def make_optimizer(model, cfg: TrainConfig):
    """AdamW; no weight decay on biases and norms."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )


class _NoLive:
    """What ranks other than 0 log to: nothing (rank 0 alone writes the DVCLive files)."""

    def __init__(self):
        self.summary, self.step = {}, 0

    def log_metric(self, *args, **kwargs):
        pass

    def log_param(self, *args, **kwargs):
        pass

    def next_step(self):
        pass

    def end(self):
        pass


def open_live(live_dir: str | Path, resume: bool = False) -> Live:
    """The run's DVCLive folder; `resume`: continue the logs a checkpoint restored."""
    if not is_main_process():
        return _NoLive()
    # dvc.yaml owns the metrics/plots declarations (DVCLive must not rewrite it)
    return Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, resume=resume)


def n_targets(batch) -> torch.Tensor | None:
    """How many target tokens the batch's loss is the mean of: an SFT batch (the model's
    own loss, labels shifted by one) or a LatentBatch (the CE over its suffix labels);
    None for other batches (their ranks' losses are averaged as they are)."""
    if isinstance(batch, dict) and "labels" in batch:
        return (batch["labels"][:, 1:] != IGNORE).sum()
    if isinstance(batch, LatentBatch):
        return (batch.labels != IGNORE).sum()
    return None


def train(model, train_examples: list, cfg: TrainConfig, *, make_batch: Callable,
          out_dir: str | Path, live_dir: str | Path | None = None, live: Live | None = None, seed: int = 0,
          loss_fn: Callable = default_loss, validate: Callable | None = None,
          save: Callable | None = None, length: Callable | None = None, optimizer=None,
          desc: str = "train", checkpoint: Checkpoint | None = None, part: int = 0) -> dict:
    """Train `model` in place; the best (by validation accuracy) checkpoint is saved to
    `out_dir` via `save(model, out_dir)` (default: save_pretrained). Returns a summary.

    `length(example)` is what `cfg.length_buckets` groups batches by.
    A multi-stage method calls this once per stage, passing its own `live` (kept open)
    and, to keep the optimizer's state across stages, its `optimizer`. `desc` names the
    run in the progress output (several may share one terminal). Data parallel: see the
    module's docstring; the summary is rank 0's (the others return theirs, without
    validation).

    Resume: with a `checkpoint` (resume.py) the loop writes one every
    `checkpoint.every` steps and at its last step; if the checkpoint loaded is of this
    `part` (a curriculum stage's index), the loop continues from it. Its `dirs` should
    hold out_dir and the DVCLive folder."""
    out_dir = Path(out_dir)
    save = save or (lambda m, d: m.save_pretrained(d))
    accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no")
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} (the global batch) does not split evenly "
                          f"over {world} processes")
    local = cfg.batch_size // world  # this rank's rows of every global batch
    optimizer = optimizer or make_optimizer(model, cfg)
    # the model is not wrapped in DDP: a latent method runs the model several times per step
    # (one pass per thought), which DDP's per-forward bookkeeping does not allow; the
    # gradients are averaged over the ranks after backward instead (average_gradients)
    model = model.to(accelerator.device)
    optimizer = accelerator.prepare(optimizer)
    torch.manual_seed(seed)

    owns_live = live is None
    resuming = checkpoint is not None and checkpoint.resuming(part)
    live = live or open_live(live_dir, resume=resuming)
    best_acc, best_step, history, first = -1.0, -1, [], 0
    started = time.time()
    data = batches(train_examples, cfg.batch_size, seed, length if cfg.length_buckets else None)
    if resuming:  # the state after step `first`; the batches it drew are drawn again, unused
        meta = checkpoint.restore({"model": model}, {"optimizer": optimizer})
        first, best_acc, best_step, history = meta["step"], meta["best_acc"], meta["best_step"], meta["history"]
        loss, live.step = torch.tensor(meta["loss"]), meta["live_step"]
        for _ in range(first):
            next(data)
        started -= meta["minutes"] * 60
    bar = tqdm(range(first, cfg.max_steps), desc=desc, mininterval=5, disable=not accelerator.is_main_process,
               initial=first, total=cfg.max_steps)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = make_batch(next(data)[rank * local: (rank + 1) * local])
        batch = {k: v.to(accelerator.device) for k, v in batch.items()} if isinstance(batch, dict) \
            else batch.to(accelerator.device)
        model.train()
        with accelerator.autocast():
            loss = loss_fn(model, batch)
        # a loss_fn may return {"loss": ..., other scalars to log as train/<name>}
        parts = {}
        if isinstance(loss, dict):
            parts = {k: v for k, v in loss.items() if k != "loss"}
            loss = loss["loss"]
        scale = 1.0
        if world > 1:
            # a token mean (SFT, Coconut) weighted by this rank's share of the global batch's
            # targets; other losses are averaged over the ranks as they are
            targets = n_targets(batch)
            if targets is not None:
                scale = rank_share(targets.item())
            if not finite_on_every_rank(loss.detach()):
                raise FloatingPointError(f"{desc}: a rank's loss is not finite at step {step} "
                                         f"(this rank's: {loss.item()}; lr {optimizer.param_groups[0]['lr']:.2e})")
        elif not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step} (lr {optimizer.param_groups[0]['lr']:.2e})")
        accelerator.backward(loss * scale if world > 1 else loss)
        if world > 1:
            average_gradients(model, world)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        last = step + 1 == cfg.max_steps
        if world > 1:  # the logged loss is the global batch's (every rank takes part)
            loss = accelerator.reduce((loss * scale).detach(), reduction="mean")
        if step % cfg.log_every == 0 or last:
            live.log_metric("train/loss", loss.item())
            live.log_metric("train/lr", optimizer.param_groups[0]["lr"])
            live.log_metric("train/grad_norm", float(grad_norm))
            for name, value in parts.items():
                live.log_metric(f"train/{name}", float(value))
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if validate is not None and ((step + 1) % cfg.eval_every == 0 or last):
            if accelerator.is_main_process:  # rank 0 validates and saves; the others wait
                model.eval()
                acc = validate(model)
                live.log_metric("val/accuracy", acc)
                history.append({"step": step + 1, "val_accuracy": acc, "loss": loss.item()})
                tqdm.write(f"{desc} step {step + 1}: loss {loss.item():.4f} val accuracy {acc:.3f}")
                if acc > best_acc:
                    best_acc, best_step = acc, step + 1
                    save(model, out_dir)
            accelerator.wait_for_everyone()
        live.next_step()
        if checkpoint is not None and checkpoint.due(step + 1, last):
            checkpoint.save(part, step + 1, {"model": model}, {"optimizer": optimizer},
                            {"step": step + 1, "best_acc": best_acc, "best_step": best_step, "history": history,
                             "loss": loss.item(), "live_step": live.step,
                             "minutes": (time.time() - started) / 60})
    if validate is None:
        if accelerator.is_main_process:
            save(model, out_dir)
        accelerator.wait_for_everyone()
        best_step = cfg.max_steps
    summary = {"best_val_accuracy": best_acc, "best_step": best_step, "final_loss": loss.item(),
               "train_minutes": (time.time() - started) / 60}
    if owns_live:
        for key, value in summary.items():
            live.summary[key] = value
        live.end()
    return {**summary, "history": history}
