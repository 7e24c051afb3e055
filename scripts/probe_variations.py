"""How a trained model does on each single svamp variation and on enlarged numbers, to see
which part of a held-out set it has not learned: python scripts/probe_variations.py MODEL_DIR [--n 300]

Problems are drawn fresh (seed 5) from params.yaml's generator (its text and step
format, so the model reads the form it was trained on), each rendered plain, with one
variation (reordered, distractor, other_quantity) or enlarged by x10, x10-12, x10-30 and
x2-5; greedy accuracy per rendering is printed. A diagnostic, not a held-out set: the
chains may overlap training's."""

import argparse
import random

import torch

from latent_reasoning.evaluation import evaluate
from latent_reasoning.config import load_params
from latent_reasoning.generator import VARIATIONS, applicable, generate_unique, realize, vary
from latent_reasoning.modeling import load_checkpoint
from latent_reasoning.tokenizer import load_tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_checkpoint(args.model_dir), load_tokenizer(args.model_dir)
    rng = random.Random(5)
    cfg = load_params(args.params).data.generator
    fmt = cfg.text_format
    problems = generate_unique(rng, args.n, (2, 4), cfg, set())
    sets = {"plain": [realize(p, **fmt) for p in problems]}
    # each variation on the problems it fits, as training applies it (a total only within
    # the training range of steps and numbers)
    sets.update({k: [vary(rng, p, (k,), **cfg.vary_format) for p in problems
                     if applicable(p, k, 4, cfg.value_max)] for k in VARIATIONS})
    for name, (lo, hi) in {"x10": (10, 10), "x10-12": (10, 12), "x10-30": (10, 30), "x2-5": (2, 5)}.items():
        sets[name] = [realize(p.scaled(rng.randint(lo, hi)), **fmt) for p in problems]
    for name, examples in sets.items():
        metrics, _ = evaluate(model, tok, examples, batch_size=300, max_new_tokens=60)
        print(f"{name}: {metrics['accuracy']:.3f} (n={len(examples)})")


if __name__ == "__main__":
    main()
