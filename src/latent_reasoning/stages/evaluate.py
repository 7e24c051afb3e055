"""Stage `evaluate`: batched greedy generation of one trained method on every test set.
Writes reports/eval/<method>/metrics.json (test set -> accuracy, tokens, n, examples/s)
and the predictions as jsonl beside it, for inspection."""

import argparse
import json
from pathlib import Path

import torch

from .. import coconut
from ..config import check_method, load_params
from ..evaluation import accuracy_by, evaluate
from ..modeling import load_checkpoint
from ..schema import read_jsonl
from ..tokenizer import load_tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--model", default=None,
                    help="default: models/<method>, or models/coconut/<variant> for a Coconut variant")
    ap.add_argument("--out", default=None, help="default: reports/eval/<method>")
    args = ap.parse_args()
    params = load_params(args.params)
    check_method(args.method)
    torch.set_num_threads(params.base.threads)
    default_dir = coconut.model_dir(args.method) if args.method in coconut.VARIANTS else f"models/{args.method}"
    model_dir = Path(args.model or default_dir)
    out = Path(args.out or f"reports/eval/{args.method}")
    (out / "predictions").mkdir(parents=True, exist_ok=True)

    model = load_checkpoint(model_dir, str(model_dir))
    tokenizer = load_tokenizer(model_dir)
    test_files = sorted(Path(args.data).glob("test_*.jsonl"))
    if not test_files:
        raise FileNotFoundError(f"no test_*.jsonl in {args.data}: run the `prepare` stage first")
    # a Coconut variant is prompted with <bot> (and pauses) and thinks n_latents times
    # (at its final stage, feeding back what it was trained to)
    run = {}
    if args.method in coconut.VARIANTS:
        run = coconut.inference_kwargs(model, args.method, params.coconut.final_stage, params.coconut)
    results = {}
    for path in test_files:
        name = path.stem.removeprefix("test_")
        examples = read_jsonl(path)
        if params.evaluate.limit:
            examples = examples[: params.evaluate.limit]
        metrics, predictions = evaluate(model, tokenizer, examples, batch_size=params.evaluate.batch_size,
                                        max_new_tokens=params.evaluate.max_new_tokens,
                                        **run)
        # svamp / gsm_hard rows say how they were varied: accuracy per variation shows which hurts
        by_variation = accuracy_by(predictions, lambda p: p.get("meta", {}).get("variation"))
        # accuracy by number of gold reasoning steps: how a method degrades with depth
        by_steps = accuracy_by(predictions, lambda p: len(examples[p["index"]].steps))
        if by_variation:
            metrics["by_variation"] = by_variation
        if by_steps:
            metrics["by_steps"] = by_steps
        results[name] = metrics
        with (out / "predictions" / f"{name}.jsonl").open("w") as f:
            for p in predictions:
                f.write(json.dumps(p) + "\n")
        print(f"{args.method} {name}: accuracy {metrics['accuracy']:.3f}, tokens {metrics['tokens']:.1f}, "
              f"n {metrics['n']}, {metrics['examples_per_s']:.0f} examples/s")
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
