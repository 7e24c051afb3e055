"""Building and loading models: a small GPT-2 from a config, or any pretrained causal LM."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AttentionInterface, AttentionMaskInterface, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from .config import ModelConfig

SINGLE_QUERY_SDPA = "sdpa_single_query"


def single_query_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Hugging Face's SDPA attention, except where each row has one query (a generation
    step, a continuous thought): there, two batched matmuls and a softmax.

    PyTorch's CPU flash kernel is built for blocks of queries. With one query per row it
    took 1.8 ms per layer at batch 256 (70 cached columns) where the matmuls take 0.75 ms:
    half of every generation step. Grouped-query models (Llama, Qwen2) are handled by
    viewing the query heads that share a KV head as that head's rows."""
    if query.shape[2] != 1 or dropout > 0 or any(kwargs.get(k) is not None for k in ("softcap", "s_aux", "position_bias")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    batch, heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(batch, kv_heads, heads // kv_heads, head_dim)
    scores = torch.matmul(q, key.transpose(-1, -2)) * (head_dim ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:  # (batch, 1, 1, kv_len): bool (True = attend) or additive
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    out = torch.matmul(scores.softmax(-1), value)  # (batch, kv_heads, group, head_dim)
    return out.reshape(batch, 1, heads, head_dim), None


AttentionInterface.register(SINGLE_QUERY_SDPA, single_query_sdpa)
AttentionMaskInterface.register(SINGLE_QUERY_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # the same masks as SDPA


def use_single_query_sdpa(model):
    """Switch a model that runs SDPA attention to `single_query_sdpa` (same results)."""
    if model.config._attn_implementation == "sdpa":
        model.set_attn_implementation(SINGLE_QUERY_SDPA)
    return model


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
            # exact GELU instead of GPT-2's tanh approximation: PyTorch's CPU kernel for
            # the approximation is 3.7x slower (15 vs 4 ms on a 13k x 512 activation), a
            # fifth of a batched prompt pass (the default "gelu_new" is slower still)
            activation_function="gelu",
            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return use_single_query_sdpa(GPT2LMHeadModel(config))
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
        return use_single_query_sdpa(AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=torch.float32))
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
