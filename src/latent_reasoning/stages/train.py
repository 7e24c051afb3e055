"""Stage `train`: supervised fine-tuning of one method's sequence format (cot or nocot)
from the base model (our small GPT-2 from scratch, or model.name_or_path)."""

import argparse
import json
from pathlib import Path

import torch

from ..config import load_params
from ..evaluation import evaluate
from ..formats import collate, encode_examples
from ..modeling import build_model
from ..parallel import is_main_process
from ..resume import for_run
from ..schema import read_jsonl
from ..tokenizer import load_tokenizer
from ..train_loop import train


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", required=True, help="cot or nocot")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--tokenizer", default="models/tokenizer")
    ap.add_argument("--out", default=None, help="default: models/<method>")
    ap.add_argument("--live-dir", default=None, help="default: reports/train/<method>")
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.train_for(args.method)
    torch.set_num_threads(params.base.threads)
    out = Path(args.out or f"models/{args.method}")
    live_dir = Path(args.live_dir or f"reports/train/{args.method}")

    tokenizer = load_tokenizer(args.tokenizer)
    train_examples = read_jsonl(Path(args.data) / "train.jsonl")
    valid = read_jsonl(Path(args.data) / "valid.jsonl")[: cfg.eval_size]
    encoded = encode_examples(tokenizer, train_examples, args.method)
    model = build_model(params.model, tokenizer, seed=params.base.seed)
    print(f"{args.method}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"{len(encoded)} training sequences, {cfg.max_steps} steps of {cfg.batch_size}")

    def validate(m):
        metrics, _ = evaluate(m, tokenizer, valid, batch_size=cfg.eval_batch_size,
                              max_new_tokens=cfg.eval_max_new_tokens)
        return metrics["accuracy"]

    def save(m, directory):
        m.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    # a rerun after a kill continues from the last checkpoint of the same params and inputs
    checkpoint = for_run(params.base, args.method, (cfg, params.model),
                         paths=[Path(args.data) / "train.jsonl", Path(args.data) / "valid.jsonl", args.tokenizer],
                         dirs=[out, live_dir])
    checkpoint.load()
    summary = train(model, encoded, cfg, make_batch=lambda seqs: collate(seqs, tokenizer.pad_token_id),
                    out_dir=out, live_dir=live_dir, seed=params.base.seed, validate=validate, save=save,
                    length=lambda seq: len(seq[0]), checkpoint=checkpoint)
    if is_main_process():  # data parallel: rank 0 writes
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    checkpoint.finish()
    if not is_main_process():
        return
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
