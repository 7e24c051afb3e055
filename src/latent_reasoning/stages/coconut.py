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
import random
from pathlib import Path

import torch

from .. import coconut
from ..config import load_params
from ..evaluation import evaluate
from ..latent import latent_forward
from ..modeling import build_model, load_checkpoint
from ..parallel import threads_per_job, train_variants, variant_stage_args
from ..schema import read_jsonl
from ..tokenizer import load_tokenizer
from ..resume import for_run
from ..train_loop import open_live


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
        coconut.init_latent_tokens(model, tokenizer, cfg.init_token)
    train_examples = read_jsonl(Path(args.data) / "train.jsonl")
    valid = read_jsonl(Path(args.data) / "valid.jsonl")[: params.train.eval_size]
    rng = random.Random(params.base.seed)
    feedback = coconut.thought_fn(model, cfg)  # None: the hidden state itself, as the paper
    loss_fn = (lambda m, b: latent_forward(m, b, thought_fn=feedback).loss)
    history = []
    # a rerun after a kill continues from the last checkpoint of the same params and inputs
    live_dir = Path(args.live_dir) / variant
    inputs = [Path(args.data) / "train.jsonl", Path(args.data) / "valid.jsonl", args.tokenizer]
    checkpoint = for_run(params.base, f"coconut/{variant}", (variant, cfg, params.train, params.model),
                         paths=inputs + ([] if variant == "pause_token" else [args.cot]), dirs=[out, live_dir])
    checkpoint.track(rng=rng, history=history)
    checkpoint.load()
    live = open_live(live_dir, resume=checkpoint.state is not None)

    print(f"{variant}: {coconut.n_thoughts(variant, None, cfg.final_stage, cfg)} thoughts at inference "
          "after the final stage")

    def accuracy(m, stage):
        metrics, _ = evaluate(
            m, tokenizer, valid, batch_size=params.train.eval_batch_size,
            max_new_tokens=params.train.eval_max_new_tokens, **coconut.inference_kwargs(m, variant, stage, cfg))
        return metrics["accuracy"]

    def save(m, directory):
        m.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    coconut.train_curriculum(
        model, train_examples, coconut.stages(variant, cfg), params, desc=variant, live=live, checkpoint=checkpoint,
        history=history, out=out, loss_fn=loss_fn, accuracy=accuracy, save=save,
        make_batch=lambda exs, stage: coconut.make_batch(tokenizer, exs, variant, stage, cfg, rng))
    summary = coconut.finish_variant(variant, history, live, out)
    checkpoint.finish()
    return summary


def main():
    args = variant_stage_args(__doc__, coconut.VARIANTS, "coconut", coconut.MODELS_ROOT)
    params = load_params(args.params)
    variants = list(dict.fromkeys(args.variant or params.coconut.variants))  # each once
    # threads from the setting, not from how many variants run now: a lone `--variant X`
    # then computes with the thread count it has in the pipeline, and gives the same model
    threads = threads_per_job(params.base.threads, params.coconut.jobs)
    # in the order listed: with fewer jobs than variants, those with thoughts (the
    # longest) start first
    train_variants(train_variant, variants, args, threads, params.coconut.jobs, args.summary)


if __name__ == "__main__":
    main()
