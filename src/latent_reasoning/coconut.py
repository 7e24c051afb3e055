"""Coconut (Hao et al. 2024): continuous thoughts trained with a multi-stage curriculum,
and the paper's ablations, all as one family of training sequences.

At curriculum stage k (1 <= k <= max_latent_stage) the first k reasoning steps of an
example are replaced by k*c continuous thoughts (c = c_thought); at the final stage
(k = max_latent_stage + 1) every step is removed and the thoughts stay at
max_latent_stage*c. A training sequence is

    question \\n <bot> [thoughts] <eot> remaining steps \\n ### answer <eos>

with the loss on the remaining steps and the answer only. The variants:

    coconut           the curriculum, from the CoT-SFT model
    no_curriculum     only the final stage, from the CoT-SFT model, for the steps Coconut's
                      final stage gets (the reference code skips the curriculum's epochs
                      with `resume`; its run then ends where Coconut's does)
    no_thought        the curriculum removes steps but adds no thoughts
    pause_as_thought  the curriculum, <pause> tokens in place of thoughts (one ordinary
                      pass, nothing fed back)
    pause_token       question \\n <bot> <pause> x (max_latent_stage*c) <eot> ### answer,
                      trained from the base model as No-CoT is, for Coconut's total steps

Pause tokens and <bot>/<eot> are inputs, not outputs: they carry no loss.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from .formats import IGNORE, prompt_text
from .latent import LatentBatch, layout
from .parallel import is_main_process
from .schema import Example
from .tokenizer import BOT, EOT, LATENT, LATENT_TOKENS, PAUSE

VARIANTS = ("coconut", "no_curriculum", "no_thought", "pause_as_thought", "pause_token")
THOUGHT_FEEDBACK = ("hidden", "soft_token")
MODELS_ROOT = "models/coconut"  # the coconut stage's output: one model folder per variant


def model_dir(variant: str, root: str | Path = MODELS_ROOT) -> Path:
    """Where the coconut stage saves a variant's model (and evaluation loads it)."""
    return Path(root) / variant


@dataclass(frozen=True)
class CoconutConfig:
    c_thought: int = 2  # continuous thoughts per removed step
    max_latent_stage: int = 3
    steps_per_stage: int = 150  # optimizer steps at each stage 1..max_latent_stage
    final_stage_steps: int = 1050  # at the final stage (all steps removed); the paper trains it longest
    pad_latent_to_max: bool = False  # always max_latent_stage*c thoughts, whatever the stage
    uniform_prob: float = 0.0  # chance an example is drawn at a random earlier stage
    reset_optimizer: bool = True  # a fresh optimizer at every stage switch
    # batches of similar length save padding, but on generated data question length follows
    # the number of steps, so each such batch holds one step count, and the answer-only
    # final stage learned less from them (docs/coconut.md: over three seeds, Coconut 48.7% bucketed
    # vs 53.5% random, no_curriculum 52.9 vs 63.7%): off by default
    length_buckets: bool = False
    lr: float = 1e-3
    final_lr: float = 1e-3
    batch_size: int = 32
    warmup_steps: int = 20
    eval_every: int = 125
    variants: tuple = VARIANTS
    jobs: int = 5  # variants trained at once, one process each (see parallel.py)
    # what a thought feeds back (see thought_fn): "hidden", the last hidden state (the
    # paper), or "soft_token", the output head's distribution as a mix of token embeddings
    thought_feedback: str = "hidden"
    init_token: str = "<<"  # the latent tokens' embeddings start as this token's (a step's first)

    def __post_init__(self):
        if self.c_thought < 1 or self.max_latent_stage < 1:
            raise ValueError("coconut: c_thought and max_latent_stage must be >= 1")
        if not 0 <= self.uniform_prob <= 1:
            raise ValueError(f"coconut: uniform_prob must be in [0, 1], got {self.uniform_prob}")
        for name in ("steps_per_stage", "final_stage_steps", "batch_size", "eval_every", "jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"coconut: {name} must be >= 1")
        if len(set(self.variants)) != len(self.variants):  # two runs would share one folder
            raise ValueError(f"coconut.variants: listed twice: {sorted({v for v in self.variants if self.variants.count(v) > 1})}")
        if self.thought_feedback not in THOUGHT_FEEDBACK:
            raise ValueError(f"coconut.thought_feedback: unknown {self.thought_feedback!r}; known: {list(THOUGHT_FEEDBACK)}")
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"coconut.variants: unknown {sorted(unknown)}; known: {list(VARIANTS)}")

    @property
    def final_stage(self) -> int:
        return self.max_latent_stage + 1

    @property
    def max_thoughts(self) -> int:
        return self.max_latent_stage * self.c_thought


def thought_fn(model, cfg: CoconutConfig):
    """The latent core's hook from a thought's hidden state h to the next input embedding.

    hidden      None: h itself, as the paper feeds it back
    soft_token  softmax(head(h)) @ E, the input embeddings mixed by the model's own
                next-token distribution (E's rows; the head's extra rows, if padded, are
                dropped). The thought stays among the token embeddings, as a written step
                would, but is not rounded to one token, so gradients still flow through it.
    """
    if cfg.thought_feedback == "hidden":
        return None
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings().weight

    def soft_token(h):
        logits = head(h)[..., : embeddings.shape[0]].float()
        return (torch.softmax(logits, dim=-1) @ embeddings.float()).to(h.dtype)

    return soft_token


def stage_train_config(train_cfg, cfg: CoconutConfig, stage: int, steps: int):
    """The shared loop's settings for one curriculum stage: the `train` section's
    optimizer settings with the stage's length, batch size, learning rate, warmup and
    validation interval (a method on Coconut's curriculum uses the same)."""
    return dataclasses.replace(
        train_cfg, max_steps=steps, batch_size=cfg.batch_size, lr=cfg.final_lr if stage == cfg.final_stage else cfg.lr,
        warmup_steps=min(cfg.warmup_steps, steps), eval_every=cfg.eval_every, length_buckets=cfg.length_buckets)


def train_curriculum(model, train_examples, stage_list, params, *, desc: str, live, checkpoint, history: list, out,
                     loss_fn, make_batch, accuracy, save) -> None:
    """The curriculum loop every method on Coconut's curriculum runs (the coconut and atp
    stages): for each (stage, steps) of `stage_list` the shared training loop with that
    stage's settings (stage_train_config), a fresh optimizer per stage when
    coconut.reset_optimizer, validation by `accuracy(model, stage)` (logged with the stage)
    and `save(model, directory)` at the final stage only (the model kept is the best of the
    final stage). `make_batch(examples, stage)` builds the stage's rows. Parts trained
    before a kill are skipped (resume.py); each stage's summary is appended to `history`."""
    from .train_loop import make_optimizer, train  # the loop imports nothing from here

    cfg, optimizer = params.coconut, None
    for part, (stage, steps) in enumerate(stage_list):
        if checkpoint.skips(part):  # trained before the kill
            continue
        final = stage == cfg.final_stage
        stage_cfg = stage_train_config(params.train, cfg, stage, steps)
        if cfg.reset_optimizer or optimizer is None:
            optimizer = make_optimizer(model, stage_cfg)
        print(f"{desc}: stage {stage}{' (final)' if final else ''}, {steps} steps")

        def validate(m, stage=stage):
            result = accuracy(m, stage)
            live.log_metric("stage", stage)
            return result

        def save_final(m, directory, final=final):
            if final:
                save(m, directory)

        summary = train(
            model, train_examples, stage_cfg, live=live, optimizer=optimizer, out_dir=out,
            seed=params.base.seed + stage, loss_fn=loss_fn, validate=validate, save=save_final,
            make_batch=lambda exs, stage=stage: make_batch(exs, stage),
            length=lambda ex: len(ex.question) + 8 * len(ex.steps), desc=desc, checkpoint=checkpoint, part=part)
        history.append({"stage": stage, **summary})
        print(f"{desc}: stage {stage}: best val accuracy {summary['best_val_accuracy']:.3f}")


def finish_variant(variant: str, history: list[dict], live, out: Path) -> dict:
    """A variant's summary from its per-stage training summaries (the final stage's best
    validation accuracy and step, the best per stage, the minutes in all), logged, with
    every stage's history written to <out>/train_summary.json."""
    final = history[-1]
    summary = {"best_val_accuracy": final["best_val_accuracy"], "best_step": final["best_step"],
               "stage_val_accuracy": {str(h["stage"]): h["best_val_accuracy"] for h in history},
               "train_minutes": sum(h["train_minutes"] for h in history)}
    live.summary.update(summary)
    live.end()
    if is_main_process():  # data parallel: rank 0 writes
        (Path(out) / "train_summary.json").write_text(json.dumps({"variant": variant, "stages": history}, indent=2) + "\n")
    return summary


def init_latent_tokens(model, tokenizer, marker: str = "<<") -> None:
    """The latent-reasoning special tokens start from the embedding of `marker`
    (coconut.init_token), the token a step starts with: "<<" for formulas (the reference
    meant to do this, but a bug made it a no-op until Aug 2025). A pretrained tokenizer
    may split it: its first piece is taken. Our word-level tokenizer knows " <<" alone when
    every step follows a word (step-named data), so the spelling with a leading space is
    tried next; a marker the tokenizer cannot spell is an error, never <unk>."""
    emb = model.get_input_embeddings().weight
    unk = tokenizer.unk_token_id
    for spelling in (marker, " " + marker):
        first = tokenizer(spelling, add_special_tokens=False)["input_ids"][0]
        if unk is None or first != unk:
            break
    else:
        raise ValueError(f'init_latent_tokens: the tokenizer spells neither "{marker}" nor " {marker}" (both <unk>): '
                         "set coconut.init_token to a token the steps start with")
    with torch.no_grad():
        start = emb[first].clone()
        for tok in LATENT_TOKENS:
            emb[tokenizer.convert_tokens_to_ids(tok)] = start


def stages(variant: str, cfg: CoconutConfig) -> list[tuple[int, int]]:
    """(stage, optimizer steps) in training order."""
    if variant == "no_curriculum":
        return [(cfg.final_stage, cfg.final_stage_steps)]
    if variant == "pause_token":
        return [(cfg.final_stage, cfg.max_latent_stage * cfg.steps_per_stage + cfg.final_stage_steps)]
    return [(k, cfg.steps_per_stage) for k in range(1, cfg.max_latent_stage + 1)] + \
        [(cfg.final_stage, cfg.final_stage_steps)]


def n_removed(ex: Example, stage: int, cfg: CoconutConfig) -> int:
    return len(ex.steps) if stage >= cfg.final_stage else min(stage, len(ex.steps))


def n_thoughts(variant: str, ex: Example | None, stage: int, cfg: CoconutConfig) -> int:
    """Thoughts (or pauses) at this stage. At inference (ex None) the number of steps is
    unknown, so a stage-k model thinks k*c times."""
    if variant == "no_thought":
        return 0
    if variant == "pause_token" or cfg.pad_latent_to_max or stage >= cfg.final_stage:
        return cfg.max_thoughts
    return cfg.c_thought * (min(stage, cfg.max_latent_stage) if ex is None else n_removed(ex, stage, cfg))


def uses_latents(variant: str) -> bool:
    return variant in ("coconut", "no_curriculum")


def sequence_parts(tokenizer, ex: Example, variant: str, stage: int, cfg: CoconutConfig):
    """(prefix ending in <bot>, thoughts, suffix, suffix labels) of one training row."""
    ids = tokenizer.convert_tokens_to_ids
    prefix = tokenizer(prompt_text(ex))["input_ids"] + [ids(BOT)]
    k = n_removed(ex, stage, cfg) if variant != "pause_token" else len(ex.steps)
    rest = "".join(step + "\n" for step in ex.steps[k:]) + "### " + ex.answer
    target = tokenizer(rest, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    n = n_thoughts(variant, ex, stage, cfg)
    if uses_latents(variant):
        return prefix, n, [ids(EOT)] + target, [IGNORE] + target
    # pauses (or nothing) as ordinary input tokens: one plain pass, no thoughts
    inputs = [ids(PAUSE)] * n + [ids(EOT)]
    return prefix, 0, inputs + target, [IGNORE] * len(inputs) + target


def make_batch(tokenizer, examples: list[Example], variant: str, stage: int, cfg: CoconutConfig,
               rng: random.Random) -> LatentBatch:
    rows = []
    for ex in examples:
        # mixing in earlier stages (uniform_prob) keeps what they taught from being forgotten
        k = rng.randint(1, stage) if stage > 1 and rng.random() < cfg.uniform_prob else stage
        rows.append(sequence_parts(tokenizer, ex, variant, k, cfg))
    prefixes, counts, suffixes, labels = zip(*rows)
    return layout(list(prefixes), list(counts), list(suffixes), list(labels),
                  tokenizer.convert_tokens_to_ids(LATENT), tokenizer.pad_token_id)


def inference_prompt(tokenizer, ex: Example, variant: str, stage: int, cfg: CoconutConfig) -> list[int]:
    """The prompt generation starts from: question \\n <bot>, plus for the pause variants
    their pauses and <eot> (latent variants get thoughts and <eot> from `generate`)."""
    ids = tokenizer.convert_tokens_to_ids
    prompt = tokenizer(prompt_text(ex))["input_ids"] + [ids(BOT)]
    if uses_latents(variant):
        return prompt
    return prompt + [ids(PAUSE)] * n_thoughts(variant, None, stage, cfg) + [ids(EOT)]


def inference_latents(variant: str, stage: int, cfg: CoconutConfig) -> int | None:
    return n_thoughts(variant, None, stage, cfg) if uses_latents(variant) else None


def inference_kwargs(model, variant: str, stage: int, cfg: CoconutConfig) -> dict:
    """How a variant's model is run at `stage` (evaluation uses cfg.final_stage), as the
    keyword arguments `evaluation.evaluate` takes: its prompts, its number of thoughts
    (None: no thoughts) and what each thought feeds back (as the model was trained)."""
    return {"prompt_fn": lambda tok, ex: inference_prompt(tok, ex, variant, stage, cfg),
            "n_latents": inference_latents(variant, stage, cfg),
            "thought_fn": thought_fn(model, cfg)}
