"""The training forward with continuous thoughts, shared by every latent method.

A training row is laid out as

    [left pad] question <bot> | <latent> x n_i  [pad x (n_max - n_i)] | <eot> rest [right pad]
               prefix (ends at column P)   latent slots P+1 .. P+n_max    suffix

with <bot> in the same column P for every row (questions are left-padded), so that the
k-th thought of every row sits in the same column and one batched single-position
forward computes it for all rows. The sequence is computed in n_max + 1 passes that share
one KV cache: the prefix; one pass per latent slot, whose input embedding is
`thought_fn(h)` of the last-layer hidden state h of the column before (masked padding
for rows with fewer thoughts), except that the last slot goes with the suffix in one
pass. A batch with no thoughts at all is one ordinary pass. Gradients flow through every thought, as in
the paper (full backprop through the chain). Position ids count only real tokens, so
padding anywhere is invisible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from .formats import IGNORE


@dataclass
class LatentBatch:
    input_ids: torch.Tensor  # (B, T), <latent> in latent slots that hold a thought
    attention_mask: torch.Tensor  # (B, T), 0 on every pad (left, in-slot, right)
    labels: torch.Tensor  # (B, T), IGNORE where there is no loss
    bot_column: int  # P: every row's <bot>
    n_latents: torch.Tensor  # (B,) thoughts per row; slots P+1 .. P+n_slots
    # latent slot columns: at least the largest n_latents. More slots than any row fills
    # still call thought_fn at each (on the state after the row's last thought), so that a
    # method can read what the model would think next: ATP-Latent's stop head does
    n_slots: int | None = None

    def __post_init__(self):
        if self.n_slots is None:
            self.n_slots = int(self.n_latents.max()) if len(self.n_latents) else 0

    def to(self, device):
        return LatentBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device),
                           self.bot_column, self.n_latents.to(device), self.n_slots)


def layout(prefixes: list[list[int]], n_latents: list[int], suffixes: list[list[int]],
           suffix_labels: list[list[int]], latent_id: int, pad_id: int, n_slots: int | None = None) -> LatentBatch:
    """Build a LatentBatch from per-row prefix tokens (ending in <bot>), thought counts and
    suffix tokens with their labels (the suffix usually starts with <eot>). `n_slots`:
    latent slot columns (default: the largest thought count)."""
    P = max(len(p) for p in prefixes) - 1
    n_max = max(n_latents) if n_slots is None else n_slots
    if n_max < max(n_latents):
        raise ValueError(f"layout: n_slots={n_slots} is fewer than a row's {max(n_latents)} thoughts")
    width = P + 1 + n_max + max(len(s) for s in suffixes)
    B = len(prefixes)
    input_ids = torch.full((B, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, width), dtype=torch.long)
    labels = torch.full((B, width), IGNORE, dtype=torch.long)
    for i, (prefix, n, suffix, lab) in enumerate(zip(prefixes, n_latents, suffixes, suffix_labels)):
        input_ids[i, P + 1 - len(prefix): P + 1] = torch.tensor(prefix)
        attention_mask[i, P + 1 - len(prefix): P + 1] = 1
        input_ids[i, P + 1: P + 1 + n] = latent_id
        attention_mask[i, P + 1: P + 1 + n] = 1
        start = P + 1 + n_max
        input_ids[i, start: start + len(suffix)] = torch.tensor(suffix)
        attention_mask[i, start: start + len(suffix)] = 1
        labels[i, start: start + len(lab)] = torch.tensor(lab)
    return LatentBatch(input_ids, attention_mask, labels, P, torch.tensor(n_latents), n_max)


@dataclass
class LatentOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # (B, T_suffix, V): logits of the last latent column and the suffix
    thoughts: torch.Tensor  # (B, n_max, H): the hidden states fed back (zeros where no thought)
    # (B, n_max, H): the last-layer state computed at each latent slot column (what a value
    # head on the thoughts reads: Latent RL); a slot past a row's last thought holds no
    # meaning (the caller masks it)
    states: torch.Tensor | None = None


def latent_forward(model, batch: LatentBatch, thought_fn=None) -> LatentOutput:
    """Loss of a LatentBatch, computed with the thoughts fed back (KV-cached passes)."""
    embed = model.get_input_embeddings()
    ids, mask = batch.input_ids, batch.attention_mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    P, n_max = batch.bot_column, batch.n_slots
    S = P + 1 + n_max  # the suffix starts at column S; logits at column c predict the token at c+1
    cache = DynamicCache()

    def run(start: int, x, all_logits=False):
        # before the suffix only the last column's logits are needed (the LM head over the
        # whole question would cost as much as a layer)
        stop = start + x.shape[1]
        return model(inputs_embeds=x, attention_mask=mask[:, :stop], position_ids=positions[:, start:stop],
                     cache=cache, use_cache=True, output_hidden_states=True,
                     logits_to_keep=0 if all_logits else 1)

    def result(logits, thoughts, states) -> LatentOutput:
        labels = batch.labels[:, S:]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
        return LatentOutput(loss, logits, thoughts, states)

    if n_max == 0:  # no thoughts anywhere (the pause and no-thought variants): one plain pass
        out = run(0, embed(ids), all_logits=True)
        none = out.logits.new_zeros((ids.shape[0], 0, embed.weight.shape[1]))
        return result(out.logits[:, P:-1], none, none)

    # n_max + 1 passes: the prefix through <bot>; one pass per thought slot but the last;
    # the last slot together with the suffix (its input is known once the slot before it
    # is computed).
    out = run(0, embed(ids[:, : P + 1]))
    h = out.hidden_states[-1][:, -1]
    last_logits = out.logits  # (B, 1, V): each row's prediction of the suffix's first token
    # a row with fewer thoughts than n_max has masked padding in its spare slots: nothing
    # reads those columns, so their embeddings get no gradient
    slot_padding = embed(ids[:, P + 1: S]).detach()
    thoughts, states = [], []

    def slot_input(k: int, h):
        active = (batch.n_latents > k)[:, None]
        thoughts.append(torch.where(active, h, torch.zeros_like(h)))
        return torch.where(active, thought_fn(h) if thought_fn is not None else h, slot_padding[:, k]), active

    for k in range(n_max - 1):
        x, active = slot_input(k, h)
        out = run(P + 1 + k, x[:, None])
        states.append(out.hidden_states[-1][:, -1])
        # a row past its last thought keeps its last hidden state and logits (its slot is masked)
        h = torch.where(active, out.hidden_states[-1][:, -1], h)
        last_logits = torch.where(active[:, :, None], out.logits, last_logits)
    x, active = slot_input(n_max - 1, h)
    out = run(S - 1, torch.cat([x[:, None], embed(ids[:, S:])], dim=1), all_logits=True)
    last_logits = torch.where(active[:, :, None], out.logits[:, :1], last_logits)
    states.append(out.hidden_states[-1][:, 0])
    return result(torch.cat([last_logits, out.logits[:, 1:-1]], dim=1), torch.stack(thoughts, dim=1),
                  torch.stack(states, dim=1))


def replay_forward(model, batch: LatentBatch, slot_inputs: torch.Tensor) -> LatentOutput:
    """The same sequence as latent_forward, with every thought's input already known
    (`slot_inputs` (B, n_slots, H), e.g. the latents an RL rollout sampled): no recurrence,
    one ordinary pass. Returns the suffix logits and loss exactly as latent_forward does, and
    as `thoughts` the hidden state each slot was computed from (the column before it; for a
    slot past a row's last thought, the state after its last thought, as latent_forward
    hands its hook). Gradients reach the slot inputs only through what the caller passes."""
    embed = model.get_input_embeddings()
    ids, mask = batch.input_ids, batch.attention_mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    P, n_max = batch.bot_column, batch.n_slots
    S = P + 1 + n_max
    x = embed(ids)
    if n_max:
        active = (torch.arange(n_max, device=ids.device)[None, :] < batch.n_latents[:, None])[:, :, None]
        slots = torch.where(active, slot_inputs.to(x.dtype), x[:, P + 1: S].detach())
        x = torch.cat([x[:, : P + 1], slots, x[:, S:]], dim=1)
    out = model(inputs_embeds=x, attention_mask=mask, position_ids=positions, output_hidden_states=True)
    hidden = out.hidden_states[-1]
    # the column each slot is computed from: P + k, or P + n_i past row i's last thought
    last = P + batch.n_latents  # (B,) the last real column before the suffix
    before = torch.minimum(P + torch.arange(n_max, device=ids.device)[None, :], last[:, None])
    thoughts = hidden.gather(1, before[:, :, None].expand(-1, -1, hidden.shape[-1]))
    first = out.logits.gather(1, last[:, None, None].expand(-1, 1, out.logits.shape[-1]))
    logits = torch.cat([first, out.logits[:, S:-1]], dim=1)
    labels = batch.labels[:, S:]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
    return LatentOutput(loss, logits, thoughts, hidden[:, P + 1: S])
