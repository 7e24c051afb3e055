"""Thought probe, gsm accuracy with each thought replaced: python scripts/probe_thoughts.py MODEL_DIR ... > reports/experiments/thought_probe/results.json

Do the trained Coconut models use what their thoughts carry? Each model answers the
`gsm` test problems with its thoughts as trained, then with each thought replaced
(through the latent core's `thought_fn` hook) by something that keeps its scale but not
its question:
  batch_mean  the mean of the batch's hidden states at that thought (same for every row)
  shuffled    another question's hidden state at that thought (a fixed derangement of rows)
  zero        a zero vector
A model that reads its thoughts loses accuracy under these; one that answers from the
question alone does not.

  usage (repository root, after `dvc repro`):
    [THREADS=2] python scripts/probe_thoughts.py MODEL_DIR [MODEL_DIR ...] \\
        > reports/experiments/thought_probe/results.json
"""

import json
import os
import sys
from pathlib import Path

import torch

from latent_reasoning import coconut
from latent_reasoning.config import load_params
from latent_reasoning.evaluation import evaluate
from latent_reasoning.modeling import load_checkpoint
from latent_reasoning.schema import read_jsonl
from latent_reasoning.tokenizer import load_tokenizer


def shuffled(h):
    # row i takes row i+1's state (a derangement: no row keeps its own)
    return torch.roll(h, shifts=1, dims=0)


PROBES = {
    "as_trained": None,
    "batch_mean": lambda h: h.mean(0, keepdim=True).expand_as(h),
    "shuffled": shuffled,
    "zero": torch.zeros_like,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    params = load_params("params.yaml")
    cfg = params.coconut
    tokenizer = load_tokenizer("models/tokenizer")
    examples = read_jsonl(Path("data/prepared/test_gsm.jsonl"))

    results = {}
    for model_dir in sys.argv[1:]:
        model = load_checkpoint(model_dir, model_dir)
        # as the pipeline's evaluation runs a coconut variant, with the probe's thoughts
        run = coconut.inference_kwargs(model, "coconut", cfg.final_stage, cfg)
        results[model_dir] = {
            name: evaluate(model, tokenizer, examples, batch_size=params.evaluate.batch_size,
                           max_new_tokens=params.evaluate.max_new_tokens,
                           **{**run, "thought_fn": fn})[0]["accuracy"]
            for name, fn in PROBES.items()}
        print(model_dir, {k: round(100 * v, 1) for k, v in results[model_dir].items()}, file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
