"""Any trained method, loaded for inference: its model and tokenizer, how it is prompted and
run (`evaluation.evaluate`'s keyword arguments) and, for ATP-Latent, its step decoder.
Used by the `evaluate` stage and by `python -m latent_reasoning.ask`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import atp, coconut, rl
from .config import Params, check_method
from .devices import pick_device
from .modeling import load_checkpoint
from .tokenizer import load_tokenizer


def default_model_dir(method: str) -> Path:
    """Where the pipeline saves a method's model."""
    if method in coconut.VARIANTS:
        return coconut.model_dir(method)
    if method in atp.VARIANTS:
        return atp.model_dir(method)
    if method in rl.RUNS:
        return rl.model_dir(method)
    return Path("models") / method


@dataclass
class Method:
    name: str
    model: object
    tokenizer: object
    run: dict  # evaluate()'s keyword arguments: prompt_fn, n_latents, thought_fn, stop_fn, group
    decoder: object = None  # ATP-Latent's step decoder (None for every other method)


def load_method(method: str, params: Params, model_dir: str | Path | None = None, device=None) -> Method:
    """The method's model (heads and decoder with it) on `device` (default: pick_device)."""
    check_method(method)
    device = device or pick_device()
    model_dir = Path(model_dir or default_model_dir(method))
    model = load_checkpoint(model_dir, str(model_dir)).to(device)
    tokenizer = load_tokenizer(model_dir)
    run, decoder = {}, None
    kind = rl.start_method(method) if method in rl.RUNS else method  # an RL run is run as what it started from
    if kind in coconut.VARIANTS:  # prompted with <bot> (and pauses), thinks at its final stage
        run = coconut.inference_kwargs(model, kind, params.coconut.final_stage, params.coconut)
    if kind in atp.VARIANTS:  # thinks until its stop head says so, through its latent head
        heads = atp.load_heads(model_dir, model.config.hidden_size, kind).to(device)
        decoder = load_checkpoint(model_dir / atp.DECODER_DIR,
                                  f"{model_dir}/{atp.DECODER_DIR} (the step decoder)").to(device)
        generator = torch.Generator().manual_seed(params.base.seed)
        run = atp.inference_kwargs(heads, kind, params.coconut, sample=params.atp.eval_sample, generator=generator)
    return Method(method, model, tokenizer, run, decoder)
