"""RL for latent reasoning: GRPO with a PPO-clip objective, one loop for every method.

One RL step (`rl_step`):

    rollout   Q training questions x G rollouts each, through the shared batched
              KV-cached generation (generation.generate): the policy's hooks sample the
              latents and the stop decisions, `temperature` samples the answer tokens.
              Everything sampled is recorded, with its log-probability.
    reward    correct x (1 + coherence_weight x coherence) + format_weight x format
              (labels: false, the label-free ablation: format_weight x format + coherence)
    advantage (r - group mean) / (group std + 1e-6), per question
    update    `epochs` passes over the rollouts in minibatches: each action's
              log-probability under the current policy is recomputed by replaying the
              record (`replay`), and the PPO-clip objective (eps = clip) is averaged over
              every action of the minibatch; optionally kl_coef x KL to the starting policy.

The policies (what the actions are, and how a rollout is replayed):

    cot      the steps and answer written in language: tokens only; replay is one
             teacher-forced pass
    coconut  deterministic thoughts, then sampled answer tokens: the answer tokens are the
             only actions (every rollout of a question shares its thoughts); replay is
             the latent core's recurrent forward, so the gradient reaches the thoughts
    atp      latents z ~ N(mu, sigma^2) from the latent head, a stop decision at each
             group's first thought (stop head, sampled), answer tokens; replay feeds the
             recorded z's as known inputs, one pass (latent.replay_forward), and reads mu,
             sigma and the stop logits off the states before each slot

The step decoder (atp) is frozen: it only reads thoughts back for the coherence reward.

The run `latent_rl` (Özeren & Aßenmacher's Latent RL) takes the same stage loop with
another step: a value head on the thoughts and an actor that raises it (latent_rl.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import atp, coconut
from .devices import autocast, multinomial
from .evaluation import answers_match, extract_answer
from .formats import IGNORE, encode_prompt
from .generation import generate
from .latent import latent_forward, layout, replay_forward
from .latent_rl import LatentRlConfig
from .parallel import (average_gradients, finite_on_every_rank, mean_over_ranks, rank, rank_share, shard,
                       sum_over_ranks, world_size)
from .prosqa import SENTENCE_RE  # a step of the graph task: "Every wumpus is a yumpus."
from .schema import Example, same_answer
from .tokenizer import EOT, LATENT

# run -> (the method it starts from, the policy it trains)
RUNS = {
    "atp_rl": ("atp_vae", "atp"),
    "atp_rl_no_coherence": ("atp_vae", "atp"),
    "atp_rl_coherence_only": ("atp_vae", "atp"),
    "grpo_cot": ("cot", "cot"),
    "grpo_coconut": ("coconut", "coconut"),
    "latent_rl": ("coconut", "coconut"),  # Latent RL: a value head on the thoughts (latent_rl.py)
}
# how each run learns: GRPO (rl_step, below) unless listed here
METHODS = {"latent_rl": "latent_rl"}
MODELS_ROOT = "models/rl"  # the rl stage's output: one folder per run
LOG_RATIO_CLAMP = 3.0  # |log pi/pi_old| per action is clamped here before exp (as the ATP code)


def start_method(run: str) -> str:
    return RUNS[run][0]


def policy_kind(run: str) -> str:
    return RUNS[run][1]


def method(run: str) -> str:
    """grpo or latent_rl: the update a run's steps make."""
    return METHODS.get(run, "grpo")


def model_dir(run: str, root: str | Path = MODELS_ROOT) -> Path:
    return Path(root) / run


@dataclass(frozen=True)
class RlConfig:
    runs: tuple = tuple(RUNS)
    coherence_weight: float = 0.1  # atp_rl's (the paper's main setting)
    format_weight: float = 0.5
    group_size: int = 8  # rollouts per question
    questions: int = 16  # questions per RL step
    steps: int = 40  # RL steps
    epochs: int = 1  # passes over each step's rollouts
    minibatch: int = 32  # rollouts per optimisation step
    lr: float = 5e-6
    clip: float = 0.2  # PPO-clip epsilon
    kl_coef: float = 0.0  # KL penalty to the starting policy (0: none, the papers' setting)
    temperature: float = 1.0  # answer-token sampling in rollouts (evaluation stays greedy)
    max_new_tokens: int = 16  # rollout answers of the latent policies
    cot_max_new_tokens: int = 96  # rollouts of grpo_cot, whose steps are written out
    grad_clip: float = 1.0
    eval_every: int = 0  # validation accuracy every this many steps (0: before and after only)
    jobs: int = 1  # runs trained at once, one process each (1: in turn, with base.threads)
    latent_rl: LatentRlConfig = field(default_factory=LatentRlConfig)  # the latent_rl run's own settings

    def __post_init__(self):
        unknown = set(self.runs) - set(RUNS)
        if unknown:
            raise ValueError(f"rl.runs: unknown {sorted(unknown)}; known: {list(RUNS)}")
        if len(set(self.runs)) != len(self.runs):
            raise ValueError("rl.runs: a run is listed twice")
        for name in ("coherence_weight", "format_weight", "kl_coef", "lr", "clip", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"rl.{name} must be a number >= 0, got {value!r}")
        if self.temperature == 0:
            raise ValueError("rl.temperature must be > 0: rollouts sample their answers")
        if self.eval_every < 0:
            raise ValueError(f"rl.eval_every must be >= 0, got {self.eval_every}")
        for name in ("group_size", "questions", "steps", "epochs", "minibatch", "max_new_tokens",
                     "cot_max_new_tokens", "jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"rl.{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError("rl.group_size must be >= 2: advantages compare rollouts of one question")


def run_weights(run: str, cfg: RlConfig) -> dict:
    """The reward's weights for a run: its ablations fix what they ablate."""
    if run == "atp_rl_no_coherence":
        return {"labels": True, "coherence": 0.0, "format": cfg.format_weight}
    if run == "atp_rl_coherence_only":
        return {"labels": False, "coherence": 1.0, "format": cfg.format_weight}
    if policy_kind(run) == "atp":
        return {"labels": True, "coherence": cfg.coherence_weight, "format": cfg.format_weight}
    return {"labels": True, "coherence": 0.0, "format": cfg.format_weight}  # no decoder to read thoughts


# --------------------------------------------------------------------------- reward

FORMULA_RE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def decoded_steps(groups: list[str]) -> list[tuple[list, float | str | None]]:
    """(operands, result) of every step read back, in order. A group may hold several
    formulas (the last group takes the steps past the last slot); a group with none is one
    step with no operands and no result. The graph task's sentences: "Every A is a B."
    uses A and gives B (concept names, compared as words)."""
    steps = []
    for text in groups:
        found = FORMULA_RE.findall(text)
        if not found:
            said = SENTENCE_RE.findall(text)
            steps.extend([([a], b) for a, b in said] or [([], None)])
        for lhs, rhs in found:
            steps.append(([float(n) for n in NUMBER_RE.findall(lhs)], _number(rhs)))
    return steps


def coherence(groups: list[str], predicted: str | None) -> float:
    """Share of decoded steps whose result is used: by a later step as an operand (whole
    numbers compared, not substrings: an empty result matches nothing) or, for the last
    step, as the predicted answer. No step at all: 0 (nothing was planned; the ATP code
    gives 1, which pays a policy for not thinking)."""
    steps = decoded_steps(groups)
    if not steps:
        return 0.0
    coherent = 0
    for i, (_, result) in enumerate(steps):
        if result is None:
            continue
        if i == len(steps) - 1 and isinstance(result, str):  # the answer names the last concept
            coherent += predicted is not None and any(b == result for _, b in SENTENCE_RE.findall(predicted))
        elif i == len(steps) - 1:
            coherent += predicted is not None and same_answer(predicted, format(result, "g"))
        else:
            coherent += any(result in operands for operands, _ in steps[i + 1:])
    return coherent / len(steps)


def reward(correct: bool, has_format: bool, coh: float, weights: dict) -> float:
    if weights["labels"]:
        return float(correct) * (1 + weights["coherence"] * coh) + weights["format"] * float(has_format)
    return weights["format"] * float(has_format) + weights["coherence"] * coh


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """(r - mean) / (std + eps) within each consecutive group of `group_size` rollouts
    (population std): zero for a group whose rewards are all equal."""
    r = rewards.view(-1, group_size)
    adv = (r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + eps)
    return adv.flatten()


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-mean over actions of min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A).
    logp, old_logp, mask: (R, A) per action; advantages (R,). Returns (loss, clipped share)."""
    log_ratio = (logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = log_ratio.exp()
    adv = advantages[:, None]
    objective = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    n = mask.sum().clamp(min=1)
    loss = -(objective * mask).sum() / n
    clipped = (((ratio - 1).abs() > clip).float() * mask).sum() / n
    return loss, clipped


# -------------------------------------------------------------------------- policies

class Policy:
    """What an RL run trains: the model (and ATP's heads), how it is prompted, how it
    samples a rollout and how a rollout is replayed. `parameters()` are what the
    optimiser updates; the step decoder is never among them. The policy runs on the
    device its model is on (heads and decoder moved with it: `to`); with `bf16` its
    forwards (rollouts, replay) run under bf16 autocast, log-probabilities in fp32."""

    def __init__(self, kind: str, model, tokenizer, ccfg: coconut.CoconutConfig, heads=None, decoder=None,
                 bf16: bool = False):
        self.kind, self.model, self.tokenizer, self.ccfg = kind, model, tokenizer, ccfg
        self.heads, self.decoder, self.bf16 = heads, decoder, bf16
        if kind == "atp" and (heads is None or heads.latent is None or heads.latent.log_var is None or heads.stop is None):
            raise ValueError("rl: the atp policy needs ATP-Latent's Gaussian latent head and stop head (atp_vae)")
        if decoder is not None:
            decoder.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device):
        for module in (self.model, self.heads, self.decoder):
            if module is not None:
                module.to(device)
        return self

    def autocast(self):
        return autocast(self.device, self.bf16)

    def parameters(self):
        params = list(self.model.parameters())
        return params + (list(self.heads.parameters()) if self.heads is not None else [])

    def train(self, mode: bool = True):
        self.model.train(mode)
        if self.heads is not None:
            self.heads.train(mode)
        return self

    def prompt(self, ex: Example) -> list[int]:
        if self.kind == "cot":
            return encode_prompt(self.tokenizer, ex)
        return coconut.inference_prompt(self.tokenizer, ex, "coconut", self.ccfg.final_stage, self.ccfg)


@dataclass
class Rollouts:
    """G rollouts per question, everything sampled and its log-probability at sampling."""
    examples: list[Example]  # the question of each rollout
    prompts: list[list[int]]
    actions: list[list[int]]  # sampled answer tokens, with eos where the rollout ended it
    texts: list[str]
    n_thoughts: list[int]
    z: torch.Tensor | None  # (R, slots, H) atp: the latents sampled at every slot
    token_logp: torch.Tensor  # (R, T) at sampling, 0 past each row's actions
    latent_logp: torch.Tensor | None  # (R, slots) atp
    stop_logp: torch.Tensor | None  # (R, groups) atp
    groups: list[list[str]] | None = None  # atp: each used step group read back to text
    temperature: float = 1.0  # what the answer tokens were sampled at

    def subset(self, rows: list[int]) -> "Rollouts":
        """The record of rollouts `rows` (a data-parallel rank's share, say)."""
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]
        rows_t = torch.tensor(rows, dtype=torch.long)
        tensor = lambda t: None if t is None else t[rows_t]
        return Rollouts(pick(self.examples), pick(self.prompts), pick(self.actions), pick(self.texts),
                        pick(self.n_thoughts), tensor(self.z), tensor(self.token_logp), tensor(self.latent_logp),
                        tensor(self.stop_logp), pick(self.groups), self.temperature)


class _LogitRecorder(torch.nn.Module):
    """The model as `generate` sees it, keeping the last-position logits of every forward,
    so that a rollout knows the probability of each token the sampler drew."""

    def __init__(self, model):
        super().__init__()
        self.model, self.logits = model, []

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    @property
    def config(self):
        return self.model.config

    def forward(self, **kwargs):
        out = self.model(**kwargs)
        self.logits.append(out.logits[:, -1].float())
        return out


def gaussian_log_prob(z, mu, log_var):
    """log N(z; mu, exp(log_var)), summed over the last dimension (in fp32)."""
    z, mu, log_var = z.float(), mu.float(), log_var.float()
    return (-0.5 * ((z - mu) ** 2 / log_var.exp() + log_var + math.log(2 * math.pi))).sum(-1)


def latent_masks(n_thoughts: torch.Tensor, slots: int, c: int):
    """Which recorded latents and stop decisions are actions of each rollout. Latents: every
    thought fed (k < n) and, where the row stopped (n < slots), the latent the stop head
    read at the stop slot. Stop decisions: at each group start k = g*c <= n, `continue`
    where k < n, `stop` at k = n < slots. Returns (latent mask (R, slots), stop mask
    (R, groups), stop decision (R, groups): 1 = stop)."""
    k = torch.arange(slots, device=n_thoughts.device)[None, :]
    n = n_thoughts[:, None]
    latent = (k < n) | ((k == n) & (n < slots))
    starts = torch.arange(0, slots, c, device=n_thoughts.device)[None, :]
    stop_mask = (starts < n) | ((starts == n) & (n < slots))
    decision = ((starts == n) & (n < slots)).long()
    return latent.float(), stop_mask.float(), decision


def padded_actions(actions: list[list[int]], width: int) -> torch.Tensor:
    """(R, width) the sampled tokens of each rollout, IGNORE past its end."""
    out = torch.full((len(actions), width), IGNORE, dtype=torch.long)
    for i, a in enumerate(actions):
        out[i, : len(a)] = torch.tensor(a, dtype=torch.long)
    return out


def token_log_probs(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(target) at `temperature` per column (logits (R, T, V), targets (R, T)), 0 where
    the target is IGNORE."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    targets = targets.to(logits.device)
    return logp.gather(2, targets.clamp(min=0)[:, :, None]).squeeze(2) * (targets != IGNORE)


@torch.no_grad()
def rollout(policy: Policy, examples: list[Example], group_size: int, temperature: float, max_new_tokens: int,
            generator: torch.Generator, decode_max_tokens: int = 24) -> Rollouts:
    """`group_size` rollouts of every question, all in one batched generation."""
    tok = policy.tokenizer
    rows = [ex for ex in examples for _ in range(group_size)]
    prompts = [policy.prompt(ex) for ex in rows]
    recorder = _LogitRecorder(policy.model)
    policy.train(False)
    kwargs = {"max_new_tokens": max_new_tokens, "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id,
                  "temperature": temperature, "rng": generator, "return_thoughts": True}
    c, slots = policy.ccfg.c_thought, policy.ccfg.max_thoughts
    record = {"z": [], "latent_logp": [], "stop_logp": []}
    if policy.kind == "coconut":
        kwargs.update(n_latents=[slots] * len(rows), eot_id=tok.convert_tokens_to_ids(EOT),
                      thought_fn=coconut.thought_fn(policy.model, policy.ccfg))
    elif policy.kind == "atp":
        heads = policy.heads

        def sample_latent(h):
            z, mu, log_var = heads.thought(h, sample=True, generator=generator)
            record["z"].append(z)
            record["latent_logp"].append(gaussian_log_prob(z, mu, log_var))
            return z

        def sample_stop(z):
            logp = F.log_softmax(heads.stop(z).float(), dim=-1)
            stop = multinomial(logp.exp(), generator)
            record["stop_logp"].append(logp.gather(1, stop[:, None]).squeeze(1))
            return stop == 1

        kwargs.update(n_latents=[slots] * len(rows), eot_id=tok.convert_tokens_to_ids(EOT),
                      thought_fn=sample_latent, stop_fn=sample_stop, group=c)
    with policy.autocast():
        out = generate(recorder, prompts, **kwargs)

    # the tokens each row sampled, eos included where it ended its answer
    actions = [t + [tok.eos_token_id] if len(t) < max_new_tokens else t for t in out.tokens]
    width = max(len(a) for a in actions)  # generation sampled `width` columns, the last
    token_logits = torch.stack(recorder.logits[-width:], dim=1)  # (R, width, V): one forward per column
    token_logp = token_log_probs(token_logits, padded_actions(actions, width), temperature)  # fp32
    texts = [tok.decode(t, skip_special_tokens=False) for t in out.tokens]
    n = torch.tensor(out.n_thoughts)
    ro = Rollouts(rows, prompts, actions, texts, out.n_thoughts, None, token_logp, None, None, None, temperature)
    if policy.kind == "atp":
        taken = len(record["z"])  # generation stops sampling once every row has stopped
        H = record["z"][0].shape[-1]
        device = policy.device
        z = torch.zeros(len(rows), slots, H, device=device)
        z[:, :taken] = torch.stack(record["z"], 1)
        latent_logp = torch.zeros(len(rows), slots, device=device)
        latent_logp[:, :taken] = torch.stack(record["latent_logp"], 1)
        stop_logp = torch.zeros(len(rows), slots // c, device=device)
        stop_logp[:, : len(record["stop_logp"])] = torch.stack(record["stop_logp"], 1)
        latent_mask, stop_mask, _ = latent_masks(n.to(device), slots, c)
        ro.z, ro.latent_logp, ro.stop_logp = z, latent_logp * latent_mask, stop_logp * stop_mask
        used = [z[i, : n_i] for i, n_i in enumerate(out.n_thoughts)]
        with policy.autocast():
            ro.groups = atp.read_back(policy.decoder, tok, used, c, decode_max_tokens)
    return ro


def replay(policy: Policy, ro: Rollouts, rows: list[int] | None = None) -> dict:
    """Log-probabilities of the recorded actions under the policy as it is now (with
    gradients): {"tokens": (R, T)} and for atp {"latents": (R, slots), "stops": (R, groups)},
    zero where a row has no such action; `rows` selects a minibatch."""
    rows = list(range(len(ro.prompts))) if rows is None else rows
    tok = policy.tokenizer
    actions = [ro.actions[i] for i in rows]
    width = max(len(a) for a in actions)
    out, device = {}, policy.device
    if policy.kind == "cot":  # one teacher-forced pass over prompt + actions, right-padded
        seqs = [ro.prompts[i] + a for i, a in zip(rows, actions)]
        T = max(len(s) for s in seqs)
        ids = torch.full((len(rows), T), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        with policy.autocast():
            logits = policy.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        # row j's action t sits at column len(prompt_j) + t, predicted from the column before
        index = torch.tensor([[len(ro.prompts[i]) - 1 + t for t in range(width)] for i in rows],
                             device=device).clamp(max=T - 1)
        logits = logits.gather(1, index[:, :, None].expand(-1, -1, logits.shape[-1]))
    else:
        eot = tok.convert_tokens_to_ids(EOT)
        n = [ro.n_thoughts[i] for i in rows]
        batch = layout([ro.prompts[i] for i in rows], n, [[eot] + a for a in actions],
                       [[IGNORE] + a for a in actions], tok.convert_tokens_to_ids(LATENT), tok.pad_token_id,
                       n_slots=policy.ccfg.max_thoughts).to(device)
        if policy.kind == "coconut":
            with policy.autocast():
                res = latent_forward(policy.model, batch, thought_fn=coconut.thought_fn(policy.model, policy.ccfg))
        else:
            z = ro.z[rows]
            with policy.autocast():
                res = replay_forward(policy.model, batch, z)
                _, mu, log_var = policy.heads.thought(res.thoughts, sample=False)
                stop_logits = policy.heads.stop(z[:, :: policy.ccfg.c_thought])
            latent_mask, stop_mask, decision = latent_masks(torch.tensor(n, device=device), policy.ccfg.max_thoughts,
                                                            policy.ccfg.c_thought)
            out["latents"] = gaussian_log_prob(z, mu, log_var) * latent_mask
            stop_logp = F.log_softmax(stop_logits.float(), dim=-1)
            out["stops"] = stop_logp.gather(2, decision[:, :, None]).squeeze(2) * stop_mask
        logits = res.logits[:, 1: 1 + width]  # suffix = <eot> then the actions
    tokens = token_log_probs(logits, padded_actions(actions, width), ro.temperature)
    # as wide as the whole rollout's record, whatever the longest answer of this minibatch
    out["tokens"] = F.pad(tokens, (0, ro.token_logp.shape[1] - width))
    return out


# ---------------------------------------------------------------------- the RL step

def action_logps(parts: dict) -> torch.Tensor:
    """Every action of a rollout side by side: tokens, then latents and stop decisions."""
    return torch.cat([parts[k] for k in ("tokens", "latents", "stops") if k in parts], dim=1)


def recorded_logps(ro: Rollouts) -> dict:
    parts = {"tokens": ro.token_logp}
    if ro.z is not None:
        parts.update(latents=ro.latent_logp, stops=ro.stop_logp)
    return parts


def action_mask(ro: Rollouts) -> torch.Tensor:
    device = ro.token_logp.device
    tokens = (padded_actions(ro.actions, ro.token_logp.shape[1]).to(device) != IGNORE).float()
    if ro.z is None:
        return tokens
    latent, stop, _ = latent_masks(torch.tensor(ro.n_thoughts, device=device), ro.z.shape[1],
                                   ro.z.shape[1] // ro.stop_logp.shape[1])
    return torch.cat([tokens, latent, stop], dim=1)


def score(ro: Rollouts, weights: dict) -> tuple[torch.Tensor, dict]:
    """Each rollout's reward, and the mean of each part (for the log)."""
    rewards, correct, formatted, coh = [], [], [], []
    for i, (ex, text) in enumerate(zip(ro.examples, ro.texts)):
        predicted = extract_answer(text)
        ok, fmt = answers_match(predicted, ex.answer), predicted is not None
        c = coherence(ro.groups[i], predicted) if ro.groups is not None else 0.0
        rewards.append(reward(ok, fmt, c, weights))
        correct.append(ok), formatted.append(fmt), coh.append(c)
    rewards = torch.tensor(rewards)
    if not torch.isfinite(rewards).all():
        raise FloatingPointError(f"rl: non-finite reward for rollout(s) {torch.nonzero(~torch.isfinite(rewards)).flatten().tolist()}")
    mean = lambda xs: sum(map(float, xs)) / len(xs)
    return rewards, {"reward": rewards.mean().item(), "correct": mean(correct), "format": mean(formatted),
                     "coherence": mean(coh), "thoughts": mean(ro.n_thoughts)}


def kl_to(policy_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(policy || reference) per action, the k3 estimator exp(d) - d - 1 with d = ref - policy,
    averaged over the actions in `mask` (d clamped as the ratios are)."""
    d = (ref_logp - policy_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return ((d.exp() - d - 1) * mask).sum() / mask.sum().clamp(min=1)


def rl_step(policy: Policy, reference: Policy, optimizer, questions: list[Example], cfg: RlConfig, weights: dict,
            generator: torch.Generator, step: int, decode_max_tokens: int = 24,
            order_generator: torch.Generator | None = None) -> dict:
    """One RL step: rollouts, rewards, advantages, `epochs` passes of PPO-clip minibatch
    updates. Returns what it logs. `generator` samples the rollouts, `order_generator`
    (default: the same) the minibatches' order.

    Data parallel (N processes): `questions` is the global batch, the same on every rank;
    each rank rolls out its own contiguous share of the questions, so every question's
    group lies on one rank and its advantages are computed there, as in one process.
    Each rank samples with its own `generator`; `order_generator` must be in the same
    state on every rank (one minibatch order)."""
    mine = shard(questions, "rl.questions")
    max_new = cfg.cot_max_new_tokens if policy.kind == "cot" else cfg.max_new_tokens
    ro = rollout(policy, mine, cfg.group_size, cfg.temperature, max_new, generator, decode_max_tokens)
    rewards, logged = score(ro, weights)
    advantages = group_advantages(rewards, cfg.group_size).to(policy.device)
    if world_size() > 1:
        logged = mean_over_ranks(logged)  # equal shares: the mean over ranks is the global mean
    logged.update(ppo_update(policy, reference, optimizer, ro, advantages, cfg, order_generator or generator, step))
    return logged


def ppo_update(policy: Policy, reference: Policy, optimizer, ro: Rollouts, advantages: torch.Tensor, cfg: RlConfig,
               generator: torch.Generator, step: int) -> dict:
    """`epochs` passes of PPO-clip over the rollouts in minibatches of `cfg.minibatch`.

    Data parallel: `ro` is this rank's share (rank r holds global rows r*R .. r*R + R - 1);
    every rank draws the same permutation of the global rows and trains on the rows of each
    minibatch it holds. Its loss, a mean over its actions, is weighted by its share of the
    minibatch's actions and the gradients are averaged over the ranks, so the update is
    the one a single process makes with every rollout."""
    world, R = world_size(), len(ro.prompts)
    offset = rank() * R
    old, mask = action_logps(recorded_logps(ro)), action_mask(ro)
    with torch.no_grad():
        ref = action_logps(replay(reference, ro))
    # the update stays in eval mode: with dropout (a pretrained model's) the replayed
    # log-probabilities would not be the rollout's, and every ratio would carry its noise
    policy.train(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    losses, clipped, norms, kls = [], [], [], []
    for _ in range(cfg.epochs):
        order = torch.randperm(R * world, generator=generator).tolist()
        for start in range(0, R * world, cfg.minibatch):
            rows = [i - offset for i in order[start: start + cfg.minibatch] if offset <= i < offset + R]
            optimizer.zero_grad(set_to_none=True)
            loss = clip_share = kl = torch.zeros((), device=old.device)
            if rows:
                new = action_logps(replay(policy, ro, rows))
                loss, clip_share = ppo_clip_loss(new, old[rows], advantages[rows], mask[rows], cfg.clip)
                kl = kl_to(new, ref[rows], mask[rows])
                if cfg.kl_coef:
                    loss = loss + cfg.kl_coef * kl
            finite = finite_on_every_rank(loss)
            if world > 1:  # each a mean over this rank's actions of the minibatch
                share = rank_share(mask[rows].sum().item() if rows else 0.0)
                loss, clip_share, kl = loss * share, clip_share * share, kl * share
            if not finite:
                raise FloatingPointError(f"rl: non-finite loss at RL step {step} (minibatch at row {start})")
            if rows:
                loss.backward()
            if world > 1:
                average_gradients(policy, world)
                loss, clip_share, kl = (torch.tensor(sum_over_ranks(x.item()) / world) for x in (loss, clip_share, kl))
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if not torch.isfinite(norm):
                raise FloatingPointError(f"rl: non-finite gradient norm at RL step {step} (minibatch at row {start})")
            optimizer.step()
            losses.append(loss.item()), clipped.append(clip_share.item()), norms.append(norm.item())
            kls.append(kl.item())
    mean = lambda xs: sum(xs) / len(xs)
    return dict(loss=mean(losses), clip_fraction=mean(clipped), grad_norm=mean(norms), kl=mean(kls))


def inference_kwargs(policy: Policy) -> dict:
    """How the trained policy is evaluated (greedy, z = mu, argmax stop), as evaluate() takes it."""
    if policy.kind == "cot":
        return {}
    if policy.kind == "coconut":
        return coconut.inference_kwargs(policy.model, "coconut", policy.ccfg.final_stage, policy.ccfg)
    return atp.inference_kwargs(policy.heads, "atp_vae", policy.ccfg)
