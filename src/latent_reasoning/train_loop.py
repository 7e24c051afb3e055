"""The one training loop every method uses.

A method supplies `make_batch(examples) -> batch` and optionally `loss_fn(model, batch)`
(default: the model's own teacher-forced loss) and `validate(model) -> accuracy`. The loop:
AdamW, linear warmup then cosine decay, gradient clipping, optional bf16, validation
every `eval_every` steps with the best checkpoint kept, DVCLive metrics, a progress bar.
Accelerate places everything (CPU here, a GPU where there is one), in one process: multi-process
data parallel is not supported yet (every rank would draw the same batches).
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

from .config import TrainConfig


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


def open_live(live_dir: str | Path) -> Live:
    # dvc.yaml owns the metrics/plots declarations (DVCLive must not rewrite it)
    return Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)


def train(model, train_examples: list, cfg: TrainConfig, *, make_batch: Callable,
          out_dir: str | Path, live_dir: str | Path | None = None, live: Live | None = None, seed: int = 0,
          loss_fn: Callable = default_loss, validate: Callable | None = None,
          save: Callable | None = None, length: Callable | None = None, optimizer=None,
          desc: str = "train") -> dict:
    """Train `model` in place; the best (by validation accuracy) checkpoint is saved to
    `out_dir` via `save(model, out_dir)` (default: save_pretrained). Returns a summary.

    `length(example)` is what `cfg.length_buckets` groups batches by.
    A multi-stage method calls this once per stage, passing its own `live` (kept open)
    and, to keep the optimizer's state across stages, its `optimizer`. `desc` names the
    run in the progress output (several may share one terminal)."""
    out_dir = Path(out_dir)
    save = save or (lambda m, d: m.save_pretrained(d))
    accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no")
    optimizer = optimizer or make_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    torch.manual_seed(seed)

    owns_live = live is None
    live = live or open_live(live_dir)
    best_acc, best_step, history = -1.0, -1, []
    started = time.time()
    data = batches(train_examples, cfg.batch_size, seed, length if cfg.length_buckets else None)
    bar = tqdm(range(cfg.max_steps), desc=desc, mininterval=5, disable=not accelerator.is_main_process)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = make_batch(next(data))
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
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step} (lr {optimizer.param_groups[0]['lr']:.2e})")
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        last = step + 1 == cfg.max_steps
        if step % cfg.log_every == 0 or last:
            live.log_metric("train/loss", loss.item())
            live.log_metric("train/lr", optimizer.param_groups[0]["lr"])
            live.log_metric("train/grad_norm", float(grad_norm))
            for name, value in parts.items():
                live.log_metric(f"train/{name}", float(value))
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if validate is not None and ((step + 1) % cfg.eval_every == 0 or last):
            model.eval()
            acc = validate(accelerator.unwrap_model(model))
            live.log_metric("val/accuracy", acc)
            history.append({"step": step + 1, "val_accuracy": acc, "loss": loss.item()})
            tqdm.write(f"{desc} step {step + 1}: loss {loss.item():.4f} val accuracy {acc:.3f}")
            if acc > best_acc:
                best_acc, best_step = acc, step + 1
                save(accelerator.unwrap_model(model), out_dir)
        live.next_step()
    if validate is None:
        save(accelerator.unwrap_model(model), out_dir)
        best_step = cfg.max_steps
    summary = {"best_val_accuracy": best_acc, "best_step": best_step, "final_loss": loss.item(),
               "train_minutes": (time.time() - started) / 60}
    if owns_live:
        for key, value in summary.items():
            live.summary[key] = value
        live.end()
    return {**summary, "history": history}
