"""Stage `coconut`: every Coconut variant (coconut, no_curriculum, no_thought,
pause_as_thought, pause_token) trained stage by stage with the shared training loop and
the shared latent forward. Each starts from the CoT-SFT model (pause_token: from the base
model, as No-CoT). Validation accuracy is logged per stage; the model kept is the best
at the final stage.

The variants are independent, so `coconut.jobs` of them train at once, one process each
(parallel.run_jobs). The default, all five at once with one thread each on the 2-core
machine, shares the cores among them, so that none idles while the last variant finishes.

Writes models/coconut/<variant>, the DVCLive logs in reports/train/coconut/<variant> and a
summary of every variant in reports/train/coconut.json."""

import argparse
import dataclasses
import json
import random
from pathlib import Path

import torch

from .. import coconut
from ..config import load_params
from ..evaluation import evaluate
from ..latent import latent_forward
from ..modeling import build_model, load_checkpoint
from ..parallel import run_jobs, threads_per_job
from ..schema import read_jsonl
from ..tokenizer import load_tokenizer
from ..train_loop import make_optimizer, open_live, train


def train_variant(variant: str, args: argparse.Namespace, threads: int) -> dict:
    """Train one variant into <args.out>/<variant>; returns its summary."""
    params = load_params(args.params)
    cfg = params.coconut
    torch.set_num_threads(threads)
    out = coconut.model_dir(variant, args.out)

    tokenizer = load_tokenizer(args.tokenizer)
    if variant == "pause_token":
        model = build_model(params.model, tokenizer, seed=params.base.seed)
    else:
        model = load_checkpoint(args.cot, "the CoT-SFT model (models/cot)")
        coconut.init_latent_tokens(model, tokenizer)
    train_examples = read_jsonl(Path(args.data) / "train.jsonl")
    valid = read_jsonl(Path(args.data) / "valid.jsonl")[: params.train.eval_size]
    rng = random.Random(params.base.seed)
    feedback = coconut.thought_fn(model, cfg)  # None: the hidden state itself, as the paper
    loss_fn = (lambda m, b: latent_forward(m, b, thought_fn=feedback).loss)
    live = open_live(Path(args.live_dir) / variant)
    optimizer, history = None, []

    for stage, steps in coconut.stages(variant, cfg):
        final = stage == cfg.final_stage
        stage_cfg = dataclasses.replace(
            params.train, max_steps=steps, batch_size=cfg.batch_size, lr=cfg.final_lr if final else cfg.lr,
            warmup_steps=min(cfg.warmup_steps, steps), eval_every=cfg.eval_every,
            length_buckets=cfg.length_buckets)
        if cfg.reset_optimizer or optimizer is None:
            optimizer = make_optimizer(model, stage_cfg)
        print(f"{variant}: stage {stage}{' (final)' if final else ''}, {steps} steps, "
              f"{coconut.n_thoughts(variant, None, stage, cfg)} thoughts at inference")

        def validate(m, stage=stage):
            metrics, _ = evaluate(
                m, tokenizer, valid, batch_size=params.train.eval_batch_size,
                max_new_tokens=params.train.eval_max_new_tokens, **coconut.inference_kwargs(m, variant, stage, cfg))
            live.log_metric("stage", stage)
            return metrics["accuracy"]

        def save(m, directory, final=final):
            if final:  # the model evaluated is the best of the final stage
                m.save_pretrained(directory)
                tokenizer.save_pretrained(directory)

        summary = train(
            model, train_examples, stage_cfg, live=live, optimizer=optimizer, out_dir=out,
            seed=params.base.seed + stage, loss_fn=loss_fn, validate=validate, save=save,
            make_batch=lambda exs, stage=stage: coconut.make_batch(tokenizer, exs, variant, stage, cfg, rng),
            length=lambda ex: len(ex.question) + 8 * len(ex.steps),
            desc=variant)
        history.append({"stage": stage, **summary})
        print(f"{variant}: stage {stage}: best val accuracy {summary['best_val_accuracy']:.3f}")

    final = history[-1]
    summary = {"best_val_accuracy": final["best_val_accuracy"], "best_step": final["best_step"],
               "stage_val_accuracy": {str(h["stage"]): h["best_val_accuracy"] for h in history},
               "train_minutes": sum(h["train_minutes"] for h in history)}
    live.summary.update(summary)
    live.end()
    (out / "train_summary.json").write_text(json.dumps({"variant": variant, "stages": history}, indent=2) + "\n")
    return summary


def _train_one(task):  # a pool worker (module level, so that it pickles)
    variant, args, threads = task
    return variant, train_variant(variant, args, threads)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", action="append", choices=coconut.VARIANTS,
                    help="train only this variant (repeatable); default: every one in coconut.variants")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--cot", default="models/cot", help="the CoT-SFT model to start from")
    ap.add_argument("--tokenizer", default="models/tokenizer")
    ap.add_argument("--out", default=coconut.MODELS_ROOT, help="one model folder per variant")
    ap.add_argument("--live-dir", default="reports/train/coconut", help="one DVCLive folder per variant")
    ap.add_argument("--summary", default="reports/train/coconut.json")
    args = ap.parse_args()
    params = load_params(args.params)
    variants = list(dict.fromkeys(args.variant or params.coconut.variants))  # each once
    # threads from the setting, not from how many variants run now: a lone `--variant X`
    # then computes with the thread count it has in the pipeline, and gives the same model
    threads = threads_per_job(params.base.threads, params.coconut.jobs)
    # in the order listed: with fewer jobs than variants, those with thoughts (the
    # longest) start first
    results = run_jobs(_train_one, [(variant, args, threads) for variant in variants],
                       params.coconut.jobs)
    summary = dict(results)
    Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    for variant, s in summary.items():
        print(f"{variant}: best final-stage val accuracy {s['best_val_accuracy']:.3f}, {s['train_minutes']:.1f} min")


if __name__ == "__main__":
    main()
