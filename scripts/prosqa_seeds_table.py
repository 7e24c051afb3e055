"""The graph task's seeds side by side: CoT-SFT and Coconut on test_prosqa for the pipeline's
seed 0 and each seed folder written by scripts/prosqa_seeds.sh, with the paired difference
(a sign test on the problems one model got right and the other wrong).

    python scripts/prosqa_seeds_table.py PIPELINE_PROSQA_DIR SEED_DIR [SEED_DIR ...]

PIPELINE_PROSQA_DIR is prosqa/ of the clone that ran the pipeline (its reports/eval/*/predictions);
each SEED_DIR holds .work/eval/{cot,coconut}/predictions (the seed script's work folder)."""

import json
import statistics
import sys
from pathlib import Path

from paired import sign_test  # scripts/paired.py: the one sign test the trial scripts share


def correct(predictions: Path) -> list[bool]:
    return [json.loads(line)["correct"] for line in predictions.read_text().splitlines()]


def main():
    pipeline, seeds = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]
    runs = {"0 (pipeline)": (pipeline / "reports/eval/cot/predictions/prosqa.jsonl",
                             pipeline / "reports/eval/coconut/predictions/prosqa.jsonl")}
    for d in seeds:
        runs[d.name.removeprefix("seed_")] = (d / ".work/eval/cot/predictions/prosqa.jsonl",
                                             d / ".work/eval/coconut/predictions/prosqa.jsonl")
    print("| seed | CoT-SFT | Coconut | Coconut - CoT | Coconut right, CoT wrong | CoT right, Coconut wrong | p |")
    print("|---|---|---|---|---|---|---|")
    cots, cocs = [], []
    for name, (cot_file, coc_file) in runs.items():
        cot, coc = correct(cot_file), correct(coc_file)
        wins = sum(b and not a for a, b in zip(cot, coc))
        losses = sum(a and not b for a, b in zip(cot, coc))
        a, b = 100 * sum(cot) / len(cot), 100 * sum(coc) / len(coc)
        cots.append(a), cocs.append(b)
        print(f"| {name} | {a:.1f}% | {b:.1f}% | {b - a:+.1f} | {wins} | {losses} | {sign_test(wins, losses):.3f} |")
    diffs = [b - a for a, b in zip(cots, cocs)]
    sd = statistics.stdev if len(cots) > 1 else (lambda xs: float("nan"))
    print(f"| mean (sd) | {statistics.mean(cots):.1f}% ({sd(cots):.1f}) | {statistics.mean(cocs):.1f}% ({sd(cocs):.1f}) "
          f"| {statistics.mean(diffs):+.1f} ({sd(diffs):.1f}) | | | |")


if __name__ == "__main__":
    main()
