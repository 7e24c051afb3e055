"""Latent RL (Özeren & Aßenmacher 2025): a value head on the thoughts, and an actor that
raises it. The run `latent_rl` of the rl stage, from the `coconut` model.

    value data  the start model answers training questions (deterministic thoughts, greedy
                answer); each rollout's states at the latent positions are kept with its
                correctness
    value head  an MLP d -> 128 -> 32 -> 8 -> 1 on one such state (ReLU, dropout), fitted by
                BCE to the rollout's correctness at every latent position; the epoch with
                the best validation ROC-AUC is kept
    the loop    per RL step: rollouts as above on fresh questions, scored; one
                teacher-forced pass over the recorded thoughts gives the states at the
                latent positions; actor loss -mean sigma(V(h_t)) moves the backbone (the
                head is a fixed function for it), critic loss BCE(V(h_t), correct) moves
                the head; each has its own optimiser and gradient clipping

What differs from the released code (its defects, see ../shared/notes/latent_rl.md):
gradients are clipped after backward, not before it; the critic's BCE reaches the backbone
only with `critic_backbone: true`; the head is fitted on the same states it is applied to
(the released code fits it on the thoughts fed in and applies it to the states computed at
those positions). Their design choices are params: `chain_grad` (false, theirs: the
actor's gradient stops at the recorded thoughts; true: it also flows back through the
chain of thoughts, the latent core's recurrent forward), `pos_weight` (theirs 20, for rare
correct answers; ours by default the data's negatives / positives), the head's sizes and
dropout.

A rollout's value is the mean of sigma(V(h_t)) over its latent positions; its ROC-AUC
against correctness on held-out rollouts says whether the head predicts success at all.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import coconut
from .evaluation import evaluate
from .latent import latent_forward, layout, replay_forward
from .parallel import (average_gradients, finite_on_every_rank, gather, mean_over_ranks, rank, rank_share, shard,
                       sum_over_ranks, world_size)
from .schema import Example
from .tokenizer import EOT, LATENT

VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass(frozen=True)
class LatentRlConfig:
    """rl.latent_rl in params.yaml. The actor's lr is rl.lr; rl.steps RL steps of
    rl.questions x rl.group_size questions each (one greedy rollout per question: as many
    rollouts as a GRPO step)."""
    value_questions: int = 2048  # training questions answered for the head's data (a tenth validates)
    heldout_questions: int = 512  # further training questions, never trained on: the head's ROC-AUC
    hidden: tuple = (128, 32, 8)  # the head's hidden sizes (theirs)
    dropout: float = 0.1
    pos_weight: float = 0.0  # BCE weight of correct rollouts; 0: negatives / positives of the value data
    value_epochs: int = 100  # pre-training epochs over the value data
    value_lr: float = 5e-4
    value_batch: int = 1024  # states per pre-training batch
    critic_lr: float = 5e-6  # the head during the loop (theirs)
    critic_backbone: bool = False  # the critic's BCE also moves the backbone (the released code's behaviour)
    chain_grad: bool = False  # the actor's gradient also flows back through the chain of thoughts

    def __post_init__(self):
        for name in ("value_questions", "heldout_questions", "value_epochs", "value_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"latent_rl.{name} must be >= 1, got {getattr(self, name)}")
        if self.value_questions < 10:
            raise ValueError("latent_rl.value_questions must be >= 10: a tenth of them validates the head")
        for name in ("pos_weight", "value_lr", "critic_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"latent_rl.{name} must be a number >= 0, got {value!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"latent_rl.dropout must be in [0, 1), got {self.dropout}")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"latent_rl.hidden must be a list of positive sizes, got {list(self.hidden)}")


class ValueHead(nn.Module):
    """V(h): the logit of "this rollout is correct" from one latent-position state."""

    def __init__(self, d: int, hidden=(128, 32, 8), dropout: float = 0.1):
        super().__init__()
        layers, width = [], d
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states).squeeze(-1)


def value_loss(logits: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """BCE(sigma(logits), correct) at every latent position of every rollout, mean over the
    positions in `mask`. logits, mask (R, slots); correct (R,) 0/1; a correct rollout's
    positions weigh `pos_weight`."""
    target = correct.float().to(logits.device)[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none",
                                             pos_weight=torch.tensor(float(pos_weight), device=logits.device))
    mask = mask.to(logits.device)
    return (bce * mask).sum() / mask.sum().clamp(min=1)


def rollout_values(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each rollout's value: the mean of sigma(V) over its latent positions."""
    return (torch.sigmoid(logits.float()) * mask).sum(1) / mask.sum(1).clamp(min=1)


def roc_auc(scores, labels) -> tuple[float, float]:
    """ROC-AUC of `scores` for binary `labels` (the Mann-Whitney statistic, ties counted
    half), and its z against chance: (AUC - 0.5) / sqrt((n1 + n0 + 1) / (12 n1 n0)), the
    null distribution's standard deviation. NaN where one class is missing (undefined)."""
    scores = torch.as_tensor(scores).detach().cpu().double()
    labels = torch.as_tensor(labels).cpu().bool()
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan"), float("nan")
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in scores.unique():  # ties share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    auc = (ranks[labels].sum().item() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return auc, (auc - 0.5) / math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))


# ------------------------------------------------------------------------ rollouts

@dataclass
class Answered:
    """Greedy rollouts of the latent policy: one per question."""
    examples: list[Example]
    prompts: list[list[int]]
    thoughts: list[torch.Tensor]  # per row (n, H): what was fed at each latent slot
    n_thoughts: list[int]
    correct: torch.Tensor  # (R,) 0/1


@torch.no_grad()
def answer(policy, examples: list[Example], max_new_tokens: int, batch_size: int = 256) -> Answered:
    """The policy's deterministic thoughts and greedy answers, exactly as the evaluate
    stage runs a Coconut model (evaluation.evaluate), with the thoughts it fed back."""
    policy.train(False)
    ccfg = policy.ccfg
    with policy.autocast():
        _, preds = evaluate(policy.model, policy.tokenizer, examples, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, keep_thoughts=True,
                            **coconut.inference_kwargs(policy.model, "coconut", ccfg.final_stage, ccfg))
    return Answered(list(examples), [policy.prompt(ex) for ex in examples],
                    [p["thought_inputs"] for p in preds], [p["thoughts"] for p in preds],
                    torch.tensor([p["correct"] for p in preds], dtype=torch.float))


def answer_all(policy, examples: list[Example], max_new_tokens: int) -> Answered:
    """answer() of every example; data parallel: each rank answers its share and every rank
    gets the whole, in order (the value head is then fitted alike on every rank)."""
    parts = gather(answer(policy, shard(examples, "latent_rl questions"), max_new_tokens))
    if len(parts) == 1:
        return parts[0]
    return Answered([e for a in parts for e in a.examples], [p for a in parts for p in a.prompts],
                    [t for a in parts for t in a.thoughts], [n for a in parts for n in a.n_thoughts],
                    torch.cat([a.correct for a in parts]))


def latent_states(policy, ans: Answered, rows: list[int], chain_grad: bool = False):
    """The last-layer states at the latent positions of rollouts `rows`, (B, slots, H), and
    their mask (B, slots): one teacher-forced pass over the recorded thoughts, or with
    `chain_grad` the latent core's recurrent forward (the thoughts recomputed, so that
    gradients flow back through them)."""
    tok, slots = policy.tokenizer, policy.ccfg.max_thoughts
    n = [ans.n_thoughts[i] for i in rows]
    eot = tok.convert_tokens_to_ids(EOT)
    # only the states before <eot> are read: the suffix is <eot> alone, with no loss
    device = policy.device
    batch = layout([ans.prompts[i] for i in rows], n, [[eot]] * len(rows), [[eot]] * len(rows),
                   tok.convert_tokens_to_ids(LATENT), tok.pad_token_id, n_slots=slots).to(device)
    if chain_grad:
        with policy.autocast():
            out = latent_forward(policy.model, batch, thought_fn=coconut.thought_fn(policy.model, policy.ccfg))
    else:
        H = policy.model.get_input_embeddings().weight.shape[1]
        inputs = torch.zeros(len(rows), slots, H, device=device)
        for j, i in enumerate(rows):
            inputs[j, : n[j]] = ans.thoughts[i]
        with policy.autocast():
            out = replay_forward(policy.model, batch, inputs)
    mask = (torch.arange(slots, device=device)[None, :] < torch.tensor(n, device=device)[:, None]).float()
    return out.states, mask


@torch.no_grad()
def value_data(policy, ans: Answered, batch_size: int = 256):
    """(states (R, slots, H), mask (R, slots)) of every rollout, no gradients."""
    parts = [latent_states(policy, ans, list(range(s, min(s + batch_size, len(ans.prompts)))))
             for s in range(0, len(ans.prompts), batch_size)]
    return torch.cat([p[0] for p in parts]).float(), torch.cat([p[1] for p in parts])


@torch.no_grad()
def head_auc(head: ValueHead, states, mask, correct) -> tuple[float, float]:
    head.train(False)
    return roc_auc(rollout_values(head(states), mask), correct)


def fit_value_head(head: ValueHead, states, mask, correct, cfg: LatentRlConfig, generator: torch.Generator) -> dict:
    """Pre-train the head: BCE at every latent position, rollouts split 9:1 into fitting
    and validation; the epoch with the best validation ROC-AUC is kept (as theirs)."""
    R = len(correct)
    correct = correct.to(states.device)
    order = torch.randperm(R, generator=generator)
    n_val = max(R // 10, 1)
    val, fit = order[:n_val], order[n_val:]
    pos_weight = pos_weight_for(correct[fit], cfg)
    # every (rollout, position) state is a sample
    rows, cols = mask[fit].nonzero(as_tuple=True)
    x, y = states[fit][rows, cols], correct[fit][rows]
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.value_lr, weight_decay=0.01)
    best = (-2.0, None, 0)  # (validation ROC-AUC, weights, epoch); undefined AUC (one class) counts -1
    for epoch in range(cfg.value_epochs):
        head.train(True)
        perm = torch.randperm(len(y), generator=generator)
        for s in range(0, len(y), cfg.value_batch):
            idx = perm[s: s + cfg.value_batch]
            loss = value_loss(head(x[idx])[:, None], y[idx], torch.ones(len(idx), 1, device=x.device), pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        auc, _ = head_auc(head, states[val], mask[val], correct[val])
        auc = auc if math.isfinite(auc) else -1.0
        if auc > best[0]:
            best = (auc, {k: v.clone() for k, v in head.state_dict().items()}, epoch)
    head.load_state_dict(best[1])
    return {"value_val_auc": best[0] if best[0] >= 0 else None, "value_best_epoch": best[2], "value_pos_weight": pos_weight,
            "value_rollouts": R, "value_correct_share": correct.mean().item()}


def pos_weight_for(correct: torch.Tensor, cfg: LatentRlConfig) -> float:
    if cfg.pos_weight:
        return float(cfg.pos_weight)
    positives = float(correct.sum())
    if positives == 0:
        raise ValueError("latent_rl: no rollout of the value data is correct; the head cannot learn what "
                         "success looks like (set latent_rl.pos_weight, or start from a better model)")
    return (len(correct) - positives) / positives


# ------------------------------------------------------------------ the actor-critic step

def actor_critic_losses(head: ValueHead, states, mask, correct, pos_weight: float, critic_backbone: bool = False):
    """(actor loss, critic loss) on the states at the latent positions.
    actor   -mean sigma(V(h_t)): the head as a fixed function (parameters detached, no
            dropout), so that raising the value moves the backbone and never the head
    critic  BCE(V(h_t), correct) with the head's dropout: moves the head, and the backbone
            only with `critic_backbone`"""
    states = states.float()  # the head runs in fp32 (the states may be bf16 under autocast)
    head.train(False)
    fixed = {name: p.detach() for name, p in head.named_parameters()}
    values = torch.func.functional_call(head, fixed, (states,))
    actor = -(torch.sigmoid(values.float()) * mask).sum() / mask.sum().clamp(min=1)
    head.train(True)
    critic = value_loss(head(states if critic_backbone else states.detach()), correct, mask, pos_weight)
    return actor, critic


def latent_rl_step(policy, head: ValueHead, actor_opt, critic_opt, questions: list[Example], cfg, step: int,
                   pos_weight: float) -> dict:
    """One Latent RL step: greedy rollouts of `questions`, then per minibatch one pass over
    the recorded thoughts, the actor's and the critic's losses, one update of each.
    `cfg` is the RlConfig (minibatch, grad_clip, max_new_tokens; its latent_rl section)."""
    lcfg = cfg.latent_rl
    world = world_size()
    # data parallel: each rank answers its contiguous share (global rows offset .. offset + R - 1)
    ans = answer(policy, shard(questions, "rl.questions x rl.group_size"), cfg.max_new_tokens)
    R, offset = len(ans.prompts), rank() * len(ans.prompts)
    policy.train(False)  # no dropout in the backbone: the states are the rollout's
    backbone = [p for p in policy.parameters() if p.requires_grad]
    logged = {k: [] for k in ("actor_loss", "critic_loss", "value", "grad_norm", "head_grad_norm")}
    order = list(range(len(questions)))
    random.Random(step).shuffle(order)
    for start in range(0, len(order), cfg.minibatch):
        rows = [i - offset for i in order[start: start + cfg.minibatch] if offset <= i < offset + R]
        actor_opt.zero_grad(set_to_none=True)
        critic_opt.zero_grad(set_to_none=True)
        actor_loss = critic_loss = torch.zeros((), device=policy.device)
        if rows:
            states, mask = latent_states(policy, ans, rows, chain_grad=lcfg.chain_grad)
            actor_loss, critic_loss = actor_critic_losses(head, states, mask, ans.correct[rows], pos_weight,
                                                          lcfg.critic_backbone)
        loss = actor_loss + critic_loss
        finite = finite_on_every_rank(loss)
        if world > 1:  # both losses are means over this rank's latent positions
            share = rank_share(float(sum(ans.n_thoughts[i] for i in rows)))
            actor_loss, critic_loss, loss = actor_loss * share, critic_loss * share, loss * share
        if not finite:
            raise FloatingPointError(f"latent_rl: non-finite loss at RL step {step} (minibatch at row {start})")
        if rows:
            loss.backward()
        if world > 1:
            average_gradients(policy, world)
            average_gradients(head, world)
            actor_loss, critic_loss = (torch.tensor(sum_over_ranks(x.item()) / world) for x in (actor_loss, critic_loss))
        # clipped after backward, each optimiser's parameters on their own
        norm = torch.nn.utils.clip_grad_norm_(backbone, cfg.grad_clip)
        head_norm = torch.nn.utils.clip_grad_norm_(list(head.parameters()), cfg.grad_clip)
        if not (torch.isfinite(norm) and torch.isfinite(head_norm)):
            raise FloatingPointError(f"latent_rl: non-finite gradient norm at RL step {step} (minibatch at row {start})")
        actor_opt.step()
        critic_opt.step()
        logged["actor_loss"].append(actor_loss.item()), logged["critic_loss"].append(critic_loss.item())
        logged["value"].append(-actor_loss.item()), logged["grad_norm"].append(norm.item())
        logged["head_grad_norm"].append(head_norm.item())
    out = {k: sum(v) / len(v) for k, v in logged.items()}
    out.update(mean_over_ranks({"reward": ans.correct.mean().item(), "correct": ans.correct.mean().item(),
                                "thoughts": sum(ans.n_thoughts) / len(ans.n_thoughts)}))
    return out
