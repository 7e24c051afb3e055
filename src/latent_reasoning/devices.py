"""Where a stage runs, at which precision, and sampling that gives the same numbers on
every device.

The training loop gets its device from accelerate; the stages without it (evaluate, ask,
rl) take it from `pick_device`. Random draws use the stage's seeded CPU generator and
move the result to the model's device: a CUDA tensor cannot be drawn from a CPU
generator, and drawing on the CPU keeps one seed's samples the same on a GPU as here."""

from __future__ import annotations

import contextlib
import os

import torch


def pick_device() -> torch.device:
    """cuda (this process's GPU under a data-parallel launcher: LOCAL_RANK) when there is
    one, unless ACCELERATE_USE_CPU is set (as accelerate reads it); else the CPU."""
    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes"):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` where asked (matmuls in bf16, softmax and norms in fp32,
    as torch's autocast lists choose); a no-op context otherwise. Log-probabilities,
    losses and advantages are computed from `.float()` logits outside it."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def randn_like(t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of t's shape, in fp32 (bf16 noise would be coarse), drawn from
    `generator` (on its device; the global RNG of t's device when None), on t's device."""
    if generator is None:
        return torch.randn(t.shape, device=t.device, dtype=torch.float32)
    return torch.randn(t.shape, generator=generator, device=generator.device, dtype=torch.float32).to(t.device)


def multinomial(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One sample per row of `probs` (B, V) -> (B,), drawn from `generator` on its device."""
    if generator is None:
        return torch.multinomial(probs, 1).squeeze(1)
    return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(1).to(probs.device)
