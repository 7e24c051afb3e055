"""Stage `atp`: ATP-Latent imitation (atp.py) for every variant in `atp.variants`, from the
CoT-SFT model, on Coconut's curriculum (the `coconut` section's c_thought, stages, steps,
learning rates and batch size), so that `atp_vae` and `coconut` differ only in the method.

Each variant trains a main model (the CoT-SFT copy that thinks), its latent and stop heads
and a step decoder (a second copy of the CoT-SFT model); `atp.jobs` variants train at once,
one process each. Validation accuracy is logged per stage; the model kept is the best of
the final stage. Writes models/atp/<variant>/ (the main model, atp_heads.safetensors,
decoder/), DVCLive logs in reports/train/atp/<variant> and reports/train/atp.json."""

import argparse
import dataclasses
import random
from pathlib import Path

import torch
from torch import nn

from .. import atp, coconut
from ..config import load_params
from ..evaluation import evaluate
from ..modeling import load_checkpoint
from ..parallel import threads_per_job, train_variants, variant_stage_args
from ..schema import read_jsonl
from ..tokenizer import load_tokenizer
from ..resume import for_run
from ..train_loop import open_live


class AtpModel(nn.Module):
    """What one variant trains: the thinking model, its heads, the step decoder."""

    def __init__(self, main, heads, decoder):
        super().__init__()
        self.main, self.heads, self.decoder = main, heads, decoder


def train_variant(variant: str, args: argparse.Namespace, threads: int) -> dict:
    params = load_params(args.params)
    cfg, acfg = params.coconut, params.atp
    torch.set_num_threads(threads)
    torch.manual_seed(params.base.seed)  # the heads' initial weights
    out = atp.model_dir(variant, args.out)

    tokenizer = load_tokenizer(args.tokenizer)
    main = load_checkpoint(args.cot, "the CoT-SFT model (models/cot)")
    coconut.init_latent_tokens(main, tokenizer, cfg.init_token)
    decoder = load_checkpoint(args.cot, "the CoT-SFT model (models/cot)")
    heads = atp.AtpHeads(main.config.hidden_size, vae=atp.uses_vae(variant), stop=atp.uses_stop(variant))
    model = AtpModel(main, heads, decoder)
    kl_weight = acfg.kl_weight if atp.uses_vae(variant) else 0.0

    train_examples = read_jsonl(Path(args.data) / "train.jsonl")
    valid = read_jsonl(Path(args.data) / "valid.jsonl")[: params.train.eval_size]
    rng = random.Random(params.base.seed)
    history = []
    # a rerun after a kill continues from the last checkpoint of the same params and inputs
    live_dir = Path(args.live_dir) / variant
    checkpoint = for_run(params.base, f"atp/{variant}", (variant, cfg, acfg, params.train),
                         paths=[Path(args.data) / "train.jsonl", Path(args.data) / "valid.jsonl", args.tokenizer,
                                args.cot], dirs=[out, live_dir])
    checkpoint.track(rng=rng, history=history)
    checkpoint.load()
    live = open_live(live_dir, resume=checkpoint.state is not None)

    def loss_fn(m, batch):
        parts = atp.atp_loss(m.main, m.heads, m.decoder, batch, cfg, kl_weight, decoder_ce=acfg.decoder_loss)
        return {"loss": parts.loss, "ce": parts.ce, "kl": parts.kl, "decoder": parts.decoder, "stop": parts.stop}

    def accuracy(m, stage):
        # at a curriculum stage the model thinks that stage's groups, then writes the rest
        run_cfg = dataclasses.replace(cfg, max_latent_stage=min(stage, cfg.max_latent_stage))
        metrics, _ = evaluate(m.main, tokenizer, valid, batch_size=params.train.eval_batch_size,
                              max_new_tokens=params.train.eval_max_new_tokens,
                              **atp.inference_kwargs(m.heads, variant, run_cfg))
        return metrics["accuracy"]

    def save(m, directory):
        directory = Path(directory)
        m.main.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        m.heads.save(directory)
        m.decoder.save_pretrained(directory / atp.DECODER_DIR)
        tokenizer.save_pretrained(directory / atp.DECODER_DIR)

    coconut.train_curriculum(
        model, train_examples, coconut.stages("coconut", cfg), params, desc=variant, live=live,
        checkpoint=checkpoint, history=history, out=out, loss_fn=loss_fn, accuracy=accuracy, save=save,
        make_batch=lambda exs, stage: atp.make_batch(tokenizer, exs, variant, stage, cfg, rng))
    summary = coconut.finish_variant(variant, history, live, out)
    checkpoint.finish()
    return summary


def main():
    args = variant_stage_args(__doc__, atp.VARIANTS, "atp", atp.MODELS_ROOT)
    params = load_params(args.params)
    variants = list(dict.fromkeys(args.variant or params.atp.variants))
    threads = threads_per_job(params.base.threads, params.atp.jobs)
    train_variants(train_variant, variants, args, threads, params.atp.jobs, args.summary)


if __name__ == "__main__":
    main()
