"""Two evaluations of the same test problems, paired: per test set the accuracy of each, the
problems the second gets right and the first wrong (gained) and the reverse (lost), and a
two-sided sign test on gained against lost. With several second folders (seeds of one run)
the counts are also pooled.

    python scripts/paired.py BASE_PREDICTIONS NEW_PREDICTIONS [NEW_PREDICTIONS ...]

Each argument is a predictions folder of `evaluate` (<set>.jsonl with a `correct` field per
problem, in test order): e.g. reports/eval/atp_vae/predictions, or a trial's
.work/<variant>/eval/predictions."""

import json
import math
import sys
from pathlib import Path


def correct(path: Path) -> list[bool]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if [r["index"] for r in rows] != list(range(len(rows))):
        sys.exit(f"{path}: rows are not the test set in order (index 0..{len(rows) - 1})")
    return [bool(r["correct"]) for r in rows]


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact binomial test of gained against lost at p = 1/2."""
    n, k = gained + lost, min(gained, lost)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    base, news = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]
    for new in [base, *news]:
        if not new.is_dir():
            sys.exit(f"{new}: not a predictions folder")
    sets = sorted(p.stem for p in base.glob("*.jsonl"))
    print("| set | run | base | new | gained / lost | sign test p |")
    print("|---|---|---|---|---|---|")
    for name in sets:
        a = correct(base / f"{name}.jsonl")
        pooled = [0, 0]
        for new in news:
            b = correct(new / f"{name}.jsonl")
            if len(a) != len(b):
                sys.exit(f"{new / name}.jsonl: {len(b)} problems, the base has {len(a)}")
            gained = sum(y and not x for x, y in zip(a, b))
            lost = sum(x and not y for x, y in zip(a, b))
            pooled[0] += gained
            pooled[1] += lost
            print(f"| {name} | {new} | {100 * sum(a) / len(a):.1f}% | {100 * sum(b) / len(b):.1f}% "
                  f"| {gained} / {lost} | {sign_test(gained, lost):.3f} |")
        if len(news) > 1:
            print(f"| {name} | pooled over {len(news)} | | | {pooled[0]} / {pooled[1]} "
                  f"| {sign_test(*pooled):.3f} |")


if __name__ == "__main__":
    main()
