"""How far off the wrong gsm answers are, per method: python scripts/wrong_answers.py > reports/experiments/thought_probe/errors.json

How far off are the wrong answers, and do × and ÷ matter? From the pipeline's `gsm`
predictions (reports/eval/<method>/predictions/gsm.jsonl), per method:
  accuracy on chains of + and − only, and on chains with a × or ÷ step
  the wrong answers by |predicted − gold| (< 1, 1, 2, 3, 4–9, ≥ 10, not a number)

  usage (repository root, after `dvc repro`):
    python scripts/wrong_answers.py > reports/experiments/thought_probe/errors.json
"""

import json
import re
import sys
from pathlib import Path

from latent_reasoning.schema import parse_number, read_jsonl

METHODS = ["cot", "nocot", "coconut", "no_curriculum", "no_thought", "pause_as_thought", "pause_token"]


def off_by(predicted, gold):
    p, g = (parse_number(x) if x is not None else None for x in (predicted, gold))
    if p is None or g is None:
        return "not a number"
    d = abs(p - g)
    return "<1" if d < 1 else str(int(d)) if d < 4 else "4-9" if d < 10 else ">=10"


def main():
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        return
    examples = read_jsonl(Path("data/prepared/test_gsm.jsonl"))
    results = {}
    for method in METHODS:
        path = Path(f"reports/eval/{method}/predictions/gsm.jsonl")
        predictions = [json.loads(line) for line in path.open()]
        if [p["question"] for p in predictions] != [ex.question for ex in examples]:
            raise SystemExit(f"{path}: not the problems of data/prepared/test_gsm.jsonl, in order")
        groups = {"plus_minus_only": [], "with_times_or_divide": []}
        wrong = {k: 0 for k in ["<1", "1", "2", "3", "4-9", ">=10", "not a number"]}
        for ex, p in zip(examples, predictions):
            with_mul = re.search(r"[*/]", "".join(ex.steps)) is not None
            groups["with_times_or_divide" if with_mul else "plus_minus_only"].append(p["correct"])
            if not p["correct"]:
                wrong[off_by(p["predicted"], ex.answer)] += 1
        results[method] = {
            "accuracy": {k: {"accuracy": round(sum(v) / len(v), 4), "n": len(v)} for k, v in groups.items()},
            "wrong_by": wrong,
        }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
