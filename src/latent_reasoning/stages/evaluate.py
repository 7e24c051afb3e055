"""Stage `evaluate`: batched greedy generation of one trained method on every test set.
Writes reports/eval/<method>/metrics.json (test set -> accuracy, tokens, n, examples/s)
and the predictions as jsonl beside it, for inspection.

An ATP-Latent variant thinks until its stop head stops it, and its step decoder reads
every used group of thoughts back to text: each prediction carries `decoded_steps`, and
each test set's metrics `stop_accuracy` (used groups = true steps, at most
max_latent_stage), `decoded_step_accuracy` (true steps decoded exactly, in order) and both
per number of steps (`readout_by_steps`), and `coherence`, the mean of the RL stage's
coherence reward over the predictions (rl.coherence)."""

import argparse
import json
from pathlib import Path

import torch

from .. import atp, rl
from ..config import load_params
from ..devices import autocast
from ..evaluation import accuracy_by, evaluate
from ..inference import load_method
from ..schema import read_jsonl


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--model", default=None,
                    help="default: models/<method>, models/coconut/<variant> or models/atp/<variant>")
    ap.add_argument("--out", default=None, help="default: reports/eval/<method>")
    args = ap.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(params.base.threads)
    loaded = load_method(args.method, params, args.model)
    model, tokenizer, run, decoder = loaded.model, loaded.tokenizer, loaded.run, loaded.decoder
    out = Path(args.out or f"reports/eval/{args.method}")
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    test_files = sorted(Path(args.data).glob("test_*.jsonl"))
    if not test_files:
        raise FileNotFoundError(f"no test_*.jsonl in {args.data}: run the `prepare` stage first")
    repeats = params.atp.eval_repeats if decoder is not None else 1
    results = {}
    for path in test_files:
        name = path.stem.removeprefix("test_")
        examples = read_jsonl(path)
        if params.evaluate.limit:
            examples = examples[: params.evaluate.limit]
        with autocast(model.device, params.evaluate.bf16):
            runs = [evaluate(model, tokenizer, examples, batch_size=params.evaluate.batch_size,
                             max_new_tokens=params.evaluate.max_new_tokens, keep_thoughts=decoder is not None,
                             **run)
                    for _ in range(repeats)]
        metrics, predictions = runs[0]
        if repeats > 1:  # sampled thoughts: the mean over repeated runs (predictions: the first)
            metrics["accuracy_runs"] = [m["accuracy"] for m, _ in runs]
            metrics["accuracy"] = sum(metrics["accuracy_runs"]) / repeats
            metrics["tokens"] = sum(m["tokens"] for m, _ in runs) / repeats
        if decoder is not None:
            with autocast(model.device, params.evaluate.bf16):
                metrics.update(atp_readouts(decoder, tokenizer, examples, predictions, params))
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


def atp_readouts(decoder, tokenizer, examples, predictions, params) -> dict:
    """Read each prediction's thought groups back to text (stored in the prediction as
    `decoded_steps`) and score them against the true steps."""
    cfg = params.coconut
    decoded = atp.read_back(decoder, tokenizer, [p.pop("thought_inputs") for p in predictions],
                            cfg.c_thought, params.atp.decode_max_tokens)
    rows, coherent = [], []
    for p, texts in zip(predictions, decoded):
        p["decoded_steps"] = texts
        rows.append(atp.readout(examples[p["index"]], texts, cfg))
        coherent.append(rl.coherence(texts, p["predicted"]))  # the RL stage's coherence reward

    def scores(rs):
        return {"stop_accuracy": sum(r["stop_correct"] for r in rs) / len(rs),
                "decoded_step_accuracy": sum(r["steps_exact"] for r in rs) / max(1, sum(r["steps"] for r in rs)),
                "mean_groups": sum(r["groups"] for r in rs) / len(rs), "n": len(rs)}

    by_steps = {}
    for r in rows:
        by_steps.setdefault(r["steps"], []).append(r)
    out = scores(rows)
    del out["n"]
    out["coherence"] = sum(coherent) / len(coherent)
    out["readout_by_steps"] = {str(k): scores(rs) for k, rs in sorted(by_steps.items())}
    return out


if __name__ == "__main__":
    main()
