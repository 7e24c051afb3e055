"""Building and loading models: a small GPT-2 from a config, or any pretrained causal LM."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from .config import ModelConfig


def build_model(cfg: ModelConfig, tokenizer, seed: int = 0):
    """The starting model of a training stage.

    No name_or_path: a GPT-2-style model, randomly initialised (seeded) with the
    tokenizer's vocabulary, which already holds every special token.
    Otherwise the pretrained model, its embeddings grown once to the tokenizer's size
    (the tokenizer stage added our special tokens to its vocabulary)."""
    torch.manual_seed(seed)
    if not cfg.name_or_path:
        config = GPT2Config(
            vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
            n_layer=cfg.n_layer, n_head=cfg.n_head,
            # dropout is no help on this much fresh generated data and costs time
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            # GPT-2's tanh-approximated GELU, as one fused op (the default "gelu_new" is
            # five elementwise ops: a third of a small model's CPU time)
            activation_function="gelu_pytorch_tanh",
            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return GPT2LMHeadModel(config)
    model = load_pretrained(cfg.name_or_path)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_pretrained(name_or_path: str | Path, what: str = "model.name_or_path"):
    """AutoModelForCausalLM.from_pretrained with an error that says what to do offline."""
    path = Path(name_or_path)
    if str(name_or_path).startswith((".", "/")) and not path.exists():
        raise FileNotFoundError(f"{what}: no model directory at {path}")
    try:
        return AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=torch.float32)
    except OSError as e:
        if path.exists():
            raise
        raise OSError(
            f"{what}={name_or_path!r} is not a local directory and could not be fetched from the "
            f"model hub (these machines have no network). Download it where there is a network "
            f"(e.g. `hf download {name_or_path} --local-dir models/base`) and set {what} to that "
            f"directory. Original error: {e}"
        ) from None


def load_checkpoint(path: str | Path, what: str = "checkpoint"):
    """A model saved by a training stage (save_pretrained)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{what}: no saved model at {path} (config.json missing): run its training stage first")
    return load_pretrained(path, what)
