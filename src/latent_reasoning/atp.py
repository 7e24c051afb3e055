"""ATP-Latent imitation (Zheng & Lee 2026, "Beyond Imitation: Reinforcement Learning for
Active Latent Planning", arXiv 2601.21598): Coconut's thoughts, sampled and supervised as
a conditional VAE, with a stop head that ends thinking.

Everything runs through the shared latent core (latent.latent_forward in training,
generation.generate at inference); this module supplies its hook and its extra losses:

    latent head   h -> trunk (Linear, GELU, Linear, LayerNorm) -> mu, log-variance;
                  the thought fed back is z = mu + sigma * eps (z = mu at test time)
    stop head     z at the first thought of each group of c -> (continue, stop) logits
    step decoder  a second causal LM (a copy of the starting model) that reads one
                  group's c thoughts as a prefix of input embeddings and is
                  teacher-forced to write that step's text (`<<30-4=26>>`, then eos)

A training row at curriculum stage k (the same stages as Coconut) has one group of c
thoughts for each of its first min(k, steps) steps (at the final stage every step, the
last group taking the steps past max_latent_stage, as the reference does). Its slots run
to c * min(k, max_latent_stage) for every row; a row's slots past its own groups are
masked (nothing reads them), but the head still samples there from the state after the
row's last thought, which is what the stop head decides on. Loss:

    CE(remaining steps and answer) + kl_weight * KL(N(mu, sigma^2) || N(0, I))
        + (decoder CE + stop CE) / groups

KL is averaged over dimensions and over the thoughts rows really use; the decoder's CE
is a per-group token mean (`atp.decoder_loss: token`) or, as the reference code, each
row's step text's token CE summed and averaged over the rows (`sequence`); groups past
a row's last step decode to eos alone and carry the stop label. The variants (`atp.variants`):

    atp_vae       the method
    atp_no_vae    a deterministic head (z = mu, no log-variance, no KL)
    atp_no_stop   no stop head: every row always thinks the maximum (c * max_latent_stage)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache

from . import coconut
from .coconut import CoconutConfig
from .devices import randn_like
from .formats import IGNORE
from .latent import LatentBatch, latent_forward, layout
from .schema import Example
from .tokenizer import LATENT

VARIANTS = ("atp_vae", "atp_no_vae", "atp_no_stop")
DECODER_LOSSES = ("token", "sequence")
MODELS_ROOT = "models/atp"  # the atp stage's output: one folder per variant
HEADS_FILE = "atp_heads.safetensors"  # beside the main model's files
DECODER_DIR = "decoder"  # the step decoder, a subfolder of the variant's folder


@dataclass(frozen=True)
class AtpConfig:
    variants: tuple = VARIANTS
    kl_weight: float = 0.001  # the paper's beta, on the per-dimension mean KL
    # the step decoder's CE per group: "token", a mean over the group's target tokens; or
    # "sequence", as the reference code: each step text's token CE summed, averaged over rows
    decoder_loss: str = "token"
    eval_sample: bool = False  # test time: z = mu (False, deterministic) or sampled
    eval_repeats: int = 1  # with eval_sample: accuracy is the mean over this many runs
    decode_max_tokens: int = 24  # reading a step group back to text
    jobs: int = 3  # variants trained at once, one process each (see parallel.py)

    def __post_init__(self):
        if not isinstance(self.kl_weight, (int, float)) or self.kl_weight < 0:
            raise ValueError(f"atp.kl_weight must be >= 0, got {self.kl_weight!r}")
        if self.decoder_loss not in DECODER_LOSSES:
            raise ValueError(f"atp.decoder_loss must be one of {list(DECODER_LOSSES)}, got {self.decoder_loss!r}")
        for name in ("eval_repeats", "decode_max_tokens", "jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"atp.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_repeats > 1 and not self.eval_sample:
            raise ValueError("atp.eval_repeats > 1 needs atp.eval_sample: true (z = mu gives one answer)")
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"atp.variants: unknown {sorted(unknown)}; known: {list(VARIANTS)}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("atp.variants: a variant is listed twice")


def uses_vae(variant: str) -> bool:
    return variant != "atp_no_vae"


def uses_stop(variant: str) -> bool:
    return variant != "atp_no_stop"


def model_dir(variant: str, root: str | Path = MODELS_ROOT) -> Path:
    return Path(root) / variant


# ------------------------------------------------------------------------- the heads

class LatentHead(nn.Module):
    """h -> (mu, log-variance); log-variance None for the deterministic ablation."""

    def __init__(self, d: int, gaussian: bool = True):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
        self.mean = nn.Linear(d, d)
        self.log_var = nn.Linear(d, d) if gaussian else None

    def forward(self, h):
        t = self.trunk(h)
        return self.mean(t), (self.log_var(t) if self.log_var is not None else None)


class AtpHeads(nn.Module):
    """The latent head and (unless switched off) the stop head, saved beside the model."""

    def __init__(self, d: int, vae: bool = True, stop: bool = True, latent: bool = True):
        super().__init__()
        # latent=False: no head, the hidden state itself is the thought (Coconut's)
        self.latent = LatentHead(d, gaussian=vae) if latent else None
        self.stop = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2)) if stop else None

    def thought(self, h, sample: bool, generator: torch.Generator | None = None):
        """(z, mu, log-variance) from the hidden state before a thought."""
        if self.latent is None:
            return h, h, None
        mu, log_var = self.latent(h)
        if log_var is None or not sample:
            return mu, mu, log_var
        eps = randn_like(mu, generator)  # drawn on the generator's device, fp32
        return mu + torch.exp(0.5 * log_var) * eps, mu, log_var

    def save(self, directory: Path) -> None:
        save_file({k: v.contiguous().cpu() for k, v in self.state_dict().items()}, str(Path(directory) / HEADS_FILE))


def load_heads(directory: Path, d: int, variant: str) -> AtpHeads:
    path = Path(directory) / HEADS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ATP-Latent heads (run the `atp` stage first)")
    heads = AtpHeads(d, vae=uses_vae(variant), stop=uses_stop(variant))
    heads.load_state_dict(load_file(str(path)))
    return heads.eval()


def kl_to_standard_normal(mu, log_var):
    """KL(N(mu, exp(log_var)) || N(0, I)) per dimension (same shape as mu)."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)


# ---------------------------------------------------------------- training batches

def n_groups(ex: Example, stage: int, cfg: CoconutConfig) -> int:
    """Step groups this example thinks at `stage`: one per latent step, at most max_latent_stage."""
    return min(coconut.n_removed(ex, stage, cfg), cfg.max_latent_stage)


def group_texts(ex: Example, stage: int, cfg: CoconutConfig, slots: int) -> list[str]:
    """The text each of `slots` groups decodes to: its step (the last group at the final
    stage also takes the steps past max_latent_stage); "" (eos alone) past the row's
    groups."""
    used = n_groups(ex, stage, cfg)
    texts = []
    for g in range(slots):
        if g >= used:
            texts.append("")
        elif g == used - 1 and stage >= cfg.final_stage:
            texts.append("".join(step + "\n" for step in ex.steps[g:]))
        else:
            texts.append(ex.steps[g] + "\n")
    return texts


@dataclass
class AtpBatch:
    latent: LatentBatch  # the main model's rows, slots for `groups` groups of c
    stop_labels: torch.Tensor  # (B, groups): 1 where the group lies past the row's steps
    decoder_ids: torch.Tensor  # (B, groups, L): each group's text then eos, right-padded
    decoder_labels: torch.Tensor  # (B, groups, L): IGNORE on padding
    groups: int

    def to(self, device):
        return AtpBatch(self.latent.to(device), self.stop_labels.to(device), self.decoder_ids.to(device),
                        self.decoder_labels.to(device), self.groups)


def make_batch(tokenizer, examples: list[Example], variant: str, stage: int, cfg: CoconutConfig,
               rng: random.Random | None = None) -> AtpBatch:
    """Coconut's training rows (coconut.sequence_parts), with ATP's thought counts: one
    group per latent step of the row, every slot of the batch's stage without a stop head
    at the final stage. With cfg.uniform_prob, a row is drawn at a random earlier stage,
    as in Coconut's make_batch (its groups then lie past its steps and carry the stop label)."""
    c = cfg.c_thought
    final = stage >= cfg.final_stage
    groups = cfg.max_latent_stage if final else min(stage, cfg.max_latent_stage)
    prefixes, counts, suffixes, labels, texts = [], [], [], [], []
    for ex in examples:
        k = stage
        if stage > 1 and cfg.uniform_prob > 0 and rng is not None and rng.random() < cfg.uniform_prob:
            k = rng.randint(1, stage)
        prefix, _, suffix, label = coconut.sequence_parts(tokenizer, ex, "coconut", k, cfg)
        prefixes.append(prefix)
        # without a stop head a row thinks every slot at the final stage, as Coconut does
        counts.append(c * (groups if k >= cfg.final_stage and not uses_stop(variant) else n_groups(ex, k, cfg)))
        suffixes.append(suffix)
        labels.append(label)
        texts.append(group_texts(ex, k, cfg, groups))
    latent = layout(prefixes, counts, suffixes, labels, tokenizer.convert_tokens_to_ids(LATENT),
                    tokenizer.pad_token_id, n_slots=c * groups)
    stop_labels = torch.tensor([[int(g * c >= n) for g in range(groups)] for n in counts])
    flat = [t for row in texts for t in row]
    encoded = tokenizer(flat, add_special_tokens=False)["input_ids"] if any(flat) else [[] for _ in flat]
    encoded = [e + [tokenizer.eos_token_id] for e in encoded]
    width = max(len(e) for e in encoded)
    dec_ids = torch.full((len(flat), width), tokenizer.pad_token_id, dtype=torch.long)
    dec_labels = torch.full((len(flat), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(encoded):
        dec_ids[i, : len(e)] = torch.tensor(e)
        dec_labels[i, : len(e)] = torch.tensor(e)
    B = len(examples)
    return AtpBatch(latent, stop_labels, dec_ids.view(B, groups, width), dec_labels.view(B, groups, width), groups)


# ---------------------------------------------------------------- the training loss

@dataclass
class AtpLoss:
    loss: torch.Tensor
    ce: torch.Tensor  # the main model's CE on the remaining steps and the answer
    kl: torch.Tensor
    decoder: torch.Tensor  # sum over groups of the per-group CE (token or sequence mean)
    stop: torch.Tensor  # sum over groups of the stop CE


def decoder_loss(decoder, z_groups, ids, labels):
    """Per-group token-mean CE of the step decoder reading each group's thoughts as a prefix.
    z_groups (N, c, H), ids / labels (N, L); returns (N,) losses and their token counts."""
    N, c, _ = z_groups.shape
    embeds = torch.cat([z_groups, decoder.get_input_embeddings()(ids)], dim=1)
    mask = torch.cat([torch.ones(N, c, dtype=torch.long, device=ids.device), (labels != IGNORE).long()], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits
    # the logits at column c-1+t predict text token t
    pred = logits[:, c - 1: -1].float()
    ce = F.cross_entropy(pred.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none").view(N, -1)
    return ce.sum(-1), (labels != IGNORE).sum(-1)


def atp_loss(model, heads: AtpHeads, decoder, batch: AtpBatch, cfg: CoconutConfig, kl_weight: float,
             generator: torch.Generator | None = None, decoder_ce: str = "token") -> AtpLoss:
    c, G = cfg.c_thought, batch.groups
    record = []

    def hook(h):  # the latent core's thought hook: sample the thought, remember mu and sigma
        z, mu, log_var = heads.thought(h, sample=True, generator=generator)
        record.append((z, mu, log_var))
        return z

    out = latent_forward(model, batch.latent, thought_fn=hook)
    z = torch.stack([r[0] for r in record], dim=1)  # (B, slots, H)
    B, slots, H = z.shape
    used = torch.arange(slots, device=z.device)[None, :] < batch.latent.n_latents[:, None]  # (B, slots)
    if record[0][2] is not None:
        mu = torch.stack([r[1] for r in record], dim=1)
        log_var = torch.stack([r[2] for r in record], dim=1)
        kl = (kl_to_standard_normal(mu, log_var).mean(-1) * used).sum() / used.sum().clamp(min=1)
    else:
        kl = z.new_zeros(())

    per_group, counts = decoder_loss(decoder, z.view(B * G, c, H), batch.decoder_ids.flatten(0, 1),
                                     batch.decoder_labels.flatten(0, 1))
    counts = counts.view(B, G)
    # per group: a mean over its target tokens ("token"), or over its rows' texts ("sequence")
    per = counts.sum(0) if decoder_ce == "token" else (counts > 0).sum(0)
    dec = (per_group.view(B, G).sum(0) / per.clamp(min=1)).sum()

    if heads.stop is not None:
        stop_logits = heads.stop(z[:, ::c])  # (B, G, 2): at the first thought of each group
        stop = F.cross_entropy(stop_logits.flatten(0, 1).float(), batch.stop_labels.flatten(), reduction="none")
        stop = stop.view(B, G).mean(0).sum()
    else:
        stop = z.new_zeros(())
    loss = out.loss + kl_weight * kl + (dec + stop) / G
    return AtpLoss(loss, out.loss.detach(), kl.detach(), dec.detach(), stop.detach())


# ------------------------------------------------------------------------ inference

def inference_kwargs(heads: AtpHeads, variant: str, cfg: CoconutConfig, sample: bool = False,
                     generator: torch.Generator | None = None) -> dict:
    """How an ATP variant is run, as `evaluation.evaluate`'s keyword arguments: <bot>
    prompts, up to c * max_latent_stage thoughts fed through the latent head (z = mu unless
    `sample`), and the stop head's argmax at each group's first thought."""

    def prompt_fn(tokenizer, ex):  # question \n <bot>, as Coconut's
        return coconut.inference_prompt(tokenizer, ex, "coconut", cfg.final_stage, cfg)

    def thought_fn(h):
        return heads.thought(h, sample=sample, generator=generator)[0]

    def stop_fn(z):
        return heads.stop(z).argmax(-1) == 1

    return {"prompt_fn": prompt_fn, "n_latents": cfg.max_thoughts, "thought_fn": thought_fn,
            "stop_fn": stop_fn if heads.stop is not None else None, "group": cfg.c_thought}


@torch.no_grad()
def read_back(decoder, tokenizer, thought_inputs: list[torch.Tensor], c: int, max_new_tokens: int,
              batch_size: int = 512) -> list[list[str]]:
    """The step decoder's greedy text for every group of c thoughts of every row."""
    groups = [(i, t[g * c: (g + 1) * c]) for i, t in enumerate(thought_inputs) for g in range(len(t) // c)]
    texts = [[] for _ in thought_inputs]
    eos = tokenizer.eos_token_id
    embed = decoder.get_input_embeddings()
    for start in range(0, len(groups), batch_size):
        chunk = groups[start: start + batch_size]
        x = torch.stack([z for _, z in chunk])  # (N, c, H): every prefix has c thoughts, no padding
        cache = DynamicCache()
        out = decoder(inputs_embeds=x, cache=cache, use_cache=True)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=x.device)
        tokens = []
        for _ in range(max_new_tokens):
            tok = out.logits[:, -1].argmax(-1)
            tok = torch.where(done, torch.full_like(tok, eos), tok)
            tokens.append(tok)
            done |= tok == eos
            if done.all():
                break
            out = decoder(inputs_embeds=embed(tok)[:, None], cache=cache, use_cache=True)
        rows = torch.stack(tokens, 1).tolist()
        for (i, _), row in zip(chunk, rows):
            row = row[: row.index(eos)] if eos in row else row
            texts[i].append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


FORMULA_RE = re.compile(r"<<[^<>]*>>")


def formulas(texts: list[str]) -> list[str]:
    """The `<<...>>` formulas in decoded group texts, in order (spaces dropped)."""
    return [f.replace(" ", "") for t in texts for f in FORMULA_RE.findall(t)]


SENTENCE_RE = re.compile(r"[^.]*\.")


def sentences(texts: list[str]) -> list[str]:
    """The sentences ("Every wumpus is a yumpus.") in decoded group texts, in order."""
    return [s.strip() for t in texts for s in SENTENCE_RE.findall(t) if s.strip()]


def readout(ex: Example, decoded: list[str], cfg: CoconutConfig) -> dict:
    """Did the row stop after the right number of groups, and how many of its true steps
    were decoded exactly (the k-th decoded formula, or sentence in the graph task, equal
    to the k-th step)?"""
    want_groups = min(len(ex.steps), cfg.max_latent_stage)
    units = sentences if (ex.meta or {}).get("task") == "prosqa" else formulas
    got = units(decoded)
    exact = sum(a == b for a, b in zip(got, units(list(ex.steps))))  # labels (names) not compared
    return {"groups": len(decoded), "stop_correct": len(decoded) == want_groups,
            "steps_exact": exact, "steps": len(ex.steps)}
