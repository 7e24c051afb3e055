"""Batched generation with a KV cache, with or without continuous thoughts, for any
Hugging Face causal LM.

Prompts of different lengths are left-padded so every row's next token sits in the last
column; position ids count only real tokens, so a padded row computes exactly what it
would alone. One forward over the prompts fills the cache, then one single-position
forward per continuous thought and per new token. Rows stop at eos independently; the
loop ends when all have.

Continuous thoughts (Coconut): a prompt ending in <bot> is followed by `n_latents[i]`
thought positions, whose input embedding is `thought_fn(h)` of the last-layer hidden
state h at the position before, then <eot>, then ordinary tokens. A row that needs fewer
thoughts than the batch's maximum idles on masked padding (attention mask 0, position
not advanced), which it cannot see, so its result is the same as alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .devices import multinomial


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p):] = torch.tensor(p, device=device)
        attention_mask[i, width - len(p):] = 1
    return input_ids, attention_mask


@dataclass
class Generation:
    tokens: list[list[int]]  # new tokens per row, eos not included
    thoughts: list[torch.Tensor]  # per row: (n_thoughts[i], hidden) the hidden states thought from
    inputs: list[torch.Tensor]  # per row: (n_thoughts[i], hidden) what was fed back: thought_fn(h)
    n_thoughts: list[int]  # per row: thoughts used (fewer than asked where stop_fn stopped it)


class _PreallocatedLayer(DynamicLayer):
    """A KV-cache layer that writes each new column into buffers sized for the whole
    generation. DynamicLayer grows by torch.cat, which copies the whole cache at every
    step: at batch 256 that copy costs as much as the step's matmuls."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            b, h, _, d = key_states.shape
            self.key_buffer = key_states.new_empty(b, h, self.capacity, d)
            self.value_buffer = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache full: {end} columns > capacity {self.capacity}")
        self.key_buffer[:, :, self.length: end] = key_states
        self.value_buffer[:, :, self.length: end] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values


class _Stepper:
    """One row-batch's KV cache, attention mask and next positions, advanced one column
    at a time (a token or an embedding per row, or masked padding for idle rows).
    `capacity` is the most columns the sequence will reach (prompt + steps)."""

    def __init__(self, model, input_ids, attention_mask, capacity: int):
        self.model = model
        batch, width = input_ids.shape
        self.width = width
        self.full_mask = attention_mask.new_zeros(batch, capacity)
        self.full_mask[:, :width] = attention_mask
        cache = Cache(layers=[_PreallocatedLayer(capacity) for _ in range(model.config.num_hidden_layers)])
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        self.cache = cache  # written in place by every forward
        self.out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         cache=cache, use_cache=True, logits_to_keep=1,
                         output_hidden_states=True)
        self.next_position = positions[:, -1:] + 1

    @property
    def hidden(self) -> torch.Tensor:
        return self.out.hidden_states[-1][:, -1]

    @property
    def logits(self) -> torch.Tensor:
        return self.out.logits[:, -1]

    def step(self, embeds: torch.Tensor, active: torch.Tensor, want_hidden: bool = False):
        """Feed one column: `embeds` (B, H) where `active`, masked padding elsewhere.
        `want_hidden`: keep the last hidden state (only a thought needs it)."""
        self.full_mask[:, self.width] = active.long()
        self.width += 1
        self.out = self.model(inputs_embeds=embeds[:, None], attention_mask=self.full_mask[:, : self.width],
                              position_ids=self.next_position, cache=self.cache,
                              use_cache=True, output_hidden_states=want_hidden)
        self.next_position = self.next_position + active.long()[:, None]


@torch.no_grad()
def generate(model, prompts: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
             n_latents: list[int] | None = None, eot_id: int | None = None, thought_fn=None,
             stop_fn=None, group: int = 1,
             temperature: float = 0.0, rng: torch.Generator | None = None,
             return_thoughts: bool = False):
    """New tokens per prompt (eos not included), greedy when temperature == 0.

    With `n_latents`, each prompt (ending in <bot>) is followed by up to that many
    continuous thoughts and then `eot_id`. `thought_fn` maps the hidden state to the next
    input embedding (identity for Coconut). `stop_fn(x) -> (B,) bool`, asked at the first
    thought of every group of `group` thoughts with the input that thought would feed,
    ends a row's thinking there (ATP-Latent's stop head): the row feeds nothing more and
    idles on masked padding until every row has stopped or reached its count, then all get
    `eot_id`. With `return_thoughts`, returns a Generation with the thought vectors and the
    thoughts each row used."""
    device = next(model.parameters()).device
    embed = model.get_input_embeddings()
    input_ids, attention_mask = left_pad(prompts, pad_id, device)
    batch = len(prompts)
    n_thought_steps = (max(n_latents, default=0) + 1) if n_latents is not None else 0
    state = _Stepper(model, input_ids, attention_mask, capacity=input_ids.shape[1] + n_thought_steps + max_new_tokens)
    thoughts, inputs = [[] for _ in prompts], [[] for _ in prompts]
    all_rows = torch.ones(batch, dtype=torch.bool, device=device)
    counts = torch.zeros(batch, dtype=torch.long, device=device)

    if n_latents is not None:  # <bot> thoughts <eot>, even when no row has a thought
        if eot_id is None:
            raise ValueError("generate: n_latents needs eot_id")
        counts = torch.tensor(n_latents, device=device)
        pad_embed = embed(torch.full((batch,), pad_id, device=device))
        for k in range(int(counts.max())):
            active = counts > k
            h = state.hidden
            x = thought_fn(h) if thought_fn is not None else h
            if stop_fn is not None and k % group == 0:  # a group starts: go on, or stop here
                stop = stop_fn(x) & active
                counts = torch.where(stop, torch.full_like(counts, k), counts)
                active = active & ~stop
                if not active.any():  # every row has stopped: no more thought columns
                    break
            if return_thoughts:  # a per-row Python loop: only when the caller wants them
                for i in active.nonzero().flatten().tolist():
                    thoughts[i].append(h[i])
                    inputs[i].append(x[i])
            state.step(torch.where(active[:, None], x.to(pad_embed.dtype), pad_embed), active, want_hidden=True)
        state.step(embed(torch.full((batch,), eot_id, device=device)), all_rows)

    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    new_tokens = []
    for t in range(max_new_tokens):
        logits = state.logits.float()
        if temperature > 0:
            token = multinomial(torch.softmax(logits / temperature, dim=-1), rng)
        else:
            token = logits.argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        new_tokens.append(token)
        finished |= token == eos_id
        if finished.all() or t + 1 == max_new_tokens:
            break
        state.step(embed(token), all_rows)
    rows = torch.stack(new_tokens, dim=1).tolist() if new_tokens else [[] for _ in prompts]
    tokens = [row[: row.index(eos_id)] if eos_id in row else row for row in rows]
    if not return_thoughts:
        return tokens
    stacked = lambda rows: [torch.stack(t) if t else torch.empty(0) for t in rows]
    return Generation(tokens, stacked(thoughts), stacked(inputs), counts.tolist())
