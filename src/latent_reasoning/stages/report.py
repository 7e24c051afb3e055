"""Report stage: reports/eval/*/metrics.json -> reports/{metrics.json, results.md, results.png}.

    python -m latent_reasoning.stages.report --eval-dir reports/eval \
        --published data/published_results.yaml --out-dir reports
"""

from __future__ import annotations

import argparse
from pathlib import Path

from latent_reasoning.report import (ReportError, collect, load_published, plot, results_markdown, value_head_summary,
                                    write_summary)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latent_reasoning.stages.report", description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", default="reports/eval", help="holds <method>/metrics.json")
    parser.add_argument("--published", default="data/published_results.yaml", help="the papers' numbers")
    parser.add_argument("--rl-summary", default="reports/train/rl.json",
                        help="the rl stage's summary: Latent RL's value-head ROC-AUC (skipped if absent)")
    parser.add_argument("--out-dir", default="reports")
    args = parser.parse_args(argv)

    try:
        summary = collect(args.eval_dir)
        published = load_published(args.published)
        value_head = value_head_summary(args.rl_summary)
    except (ReportError, OSError) as e:
        # a bad input is a user-facing problem: one clear line, no traceback
        raise SystemExit(f"report: {e}") from None

    out = Path(args.out_dir)
    write_summary(summary, out / "metrics.json")
    (out / "results.md").write_text(results_markdown(summary, published, value_head))
    plot(summary, out / "results.png")
    print(f"report: {len(summary)} methods -> {out}/metrics.json, results.md, results.png")


if __name__ == "__main__":
    main()
