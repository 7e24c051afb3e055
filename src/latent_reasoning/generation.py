"""Batched generation with a KV cache, for any Hugging Face causal LM.

Prompts of different lengths are left-padded so every row's next token sits in the last
column; position ids count only real tokens, so a padded row computes exactly what it
would alone. One forward over the prompts fills the cache, then one single-position
forward per new token. Rows stop at eos independently; the loop ends when all have.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p):] = torch.tensor(p, device=device)
        attention_mask[i, width - len(p):] = 1
    return input_ids, attention_mask


@torch.no_grad()
def generate(model, prompts: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
             temperature: float = 0.0, rng: torch.Generator | None = None) -> list[list[int]]:
    """New tokens per prompt (eos not included), greedy when temperature == 0."""
    device = next(model.parameters()).device
    input_ids, attention_mask = left_pad(prompts, pad_id, device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
    next_position = position_ids[:, -1:] + 1
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    new_tokens = []
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        if temperature > 0:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=rng).squeeze(1)
        else:
            token = logits.argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        new_tokens.append(token)
        finished |= token == eos_id
        if finished.all():
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(prompts), 1))], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=next_position,
                    past_key_values=out.past_key_values, use_cache=True)
        next_position = next_position + 1
    rows = torch.stack(new_tokens, dim=1).tolist() if new_tokens else [[] for _ in prompts]
    return [row[: row.index(eos_id)] if eos_id in row else row for row in rows]
