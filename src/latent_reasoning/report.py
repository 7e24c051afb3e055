"""The report stage: every method's eval metrics -> one summary, a markdown table and a plot.

Input, one file per evaluated method, as the eval stage writes it:

    reports/eval/<method>/metrics.json
    {"<test_set>": {"accuracy": 0..1, "tokens": mean generated tokens, "n": int, ...}, ...}

The summary is method -> test set -> {"accuracy", "tokens", "n"}, methods and test
sets in the fixed orders below so that tables and plots read the same every run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .rl import RUNS as RL_RUNS

# display orders; names not listed here come after, alphabetically
METHODS = ("cot", "nocot", "coconut", "no_curriculum", "no_thought",
           "pause_as_thought", "pause_token", "atp_vae", "atp_no_vae", "atp_no_stop",
           "atp_rl", "atp_rl_no_coherence", "atp_rl_coherence_only", "grpo_cot", "grpo_coconut", "latent_rl")
# the four sets in the roles of ATP-Latent's benchmarks (GSM8K, GSM-Hard, SVAMP, MultiArith)
BENCHMARK_SETS = ("gsm", "gsm_hard", "svamp", "multiarith")
RL_START = {run: start for run, (start, _) in RL_RUNS.items()}  # RL run -> the method it starts from
TEST_SETS = ("gsm", "gsm_hard", "svamp", "multiarith", "longer")

READOUTS = ("stop_accuracy", "decoded_step_accuracy")
PUBLISHED_KEYS = ("paper", "table", "model", "dataset", "method", "accuracy", "source")

SCALE_CAVEAT = (
    "These numbers are from the papers: GPT-2 (124M) / Llama-scale pretrained models "
    "fine-tuned on the real GSM8k, a different scale from our small from-scratch models "
    "trained on generated data. Compare gaps and ratios (e.g. CoT vs No-CoT accuracy, "
    "tokens per method), not absolute values."
)


class ReportError(ValueError):
    """A malformed metrics or published-results file; the message names the file."""


def ordered(names, order) -> list[str]:
    known = [n for n in order if n in names]
    return known + sorted(n for n in names if n not in order)


def _number(x) -> bool:
    # bool is an int in Python, but true/false in a metrics file is a bug upstream
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _read_entry(entry, where: str) -> dict:
    if not isinstance(entry, dict):
        raise ReportError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in ("accuracy", "tokens", "n"):
        if key not in entry:
            raise ReportError(f"{where}: missing '{key}'")
    acc, tokens, n = entry["accuracy"], entry["tokens"], entry["n"]
    # accuracy is a fraction; a value like 93.4 means someone wrote percent
    if not _number(acc) or not 0 <= acc <= 1:
        raise ReportError(f"{where}: 'accuracy' must be a number in [0, 1], got {acc!r}")
    if not _number(tokens) or tokens < 0:
        raise ReportError(f"{where}: 'tokens' must be a number >= 0, got {tokens!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ReportError(f"{where}: 'n' must be a positive integer, got {n!r}")
    out = {"accuracy": float(acc), "tokens": float(tokens), "n": n}
    # optional breakdowns: accuracy by number of gold reasoning steps, and by variation
    # (svamp's combinations, gsm_hard's "enlarged")
    for key, what, sort_key in (("by_steps", "a step count", lambda kv: int(kv[0])),
                                ("by_variation", "a variation", lambda kv: kv[0])):
        if key not in entry:
            continue
        groups = entry[key]
        if not isinstance(groups, dict) or not all(
                isinstance(v, dict) and _number(v.get("accuracy")) and 0 <= v["accuracy"] <= 1
                and isinstance(v.get("n"), int) for v in groups.values()):
            raise ReportError(f"{where}: '{key}' must map {what} to {{accuracy in [0, 1], n}}")
        out[key] = {str(k): {"accuracy": float(v["accuracy"]), "n": v["n"]}
                    for k, v in sorted(groups.items(), key=sort_key)}
    # optional, ATP-Latent: how often the stop head stopped after the true number of steps,
    # and how many true steps the step decoder read back exactly; overall and per step count;
    # and the mean coherence of the steps read back (the RL stage's coherence reward)
    for key in READOUTS + ("coherence",):
        if key in entry:
            if not _number(entry[key]) or not 0 <= entry[key] <= 1:
                raise ReportError(f"{where}: '{key}' must be a number in [0, 1], got {entry[key]!r}")
            out[key] = float(entry[key])
    if "readout_by_steps" in entry:
        groups = entry["readout_by_steps"]
        if not isinstance(groups, dict) or not all(
                isinstance(v, dict) and all(_number(v.get(k)) and 0 <= v[k] <= 1 for k in READOUTS)
                and isinstance(v.get("n"), int) for v in groups.values()):
            raise ReportError(f"{where}: 'readout_by_steps' must map a step count to "
                              f"{{{', '.join(READOUTS)} in [0, 1], n}}")
        out["readout_by_steps"] = {str(k): {**{r: float(v[r]) for r in READOUTS}, "n": v["n"]}
                                   for k, v in sorted(groups.items(), key=lambda kv: int(kv[0]))}
    return out


def collect(eval_dir) -> dict:
    """Read every <eval_dir>/<method>/metrics.json into method -> test set -> metrics."""
    eval_dir = Path(eval_dir)
    paths = sorted(eval_dir.glob("*/metrics.json"))
    if not paths:
        raise ReportError(f"{eval_dir}: no <method>/metrics.json files found")
    summary = {}
    for path in paths:
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}: broken JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(raw, dict) or not raw:
            raise ReportError(f"{path}: expected a non-empty object of test sets")
        sets = {name: _read_entry(entry, f"{path}: test set '{name}'") for name, entry in raw.items()}
        summary[path.parent.name] = {s: sets[s] for s in ordered(sets, TEST_SETS)}
    return {m: summary[m] for m in ordered(summary, METHODS)}


def write_summary(summary: dict, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")


def load_published(path) -> list[dict]:
    """The papers' numbers (data/published_results.yaml): a list of entries."""
    path = Path(path)
    try:
        rows = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ReportError(f"{path}: broken YAML ({e})") from None
    if not isinstance(rows, list):
        raise ReportError(f"{path}: expected a list of entries")
    for i, row in enumerate(rows):
        missing = [k for k in PUBLISHED_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ReportError(f"{path}: entry {i} is missing {', '.join(missing)}")
        if not _number(row["accuracy"]) or not 0 <= row["accuracy"] <= 100:
            raise ReportError(f"{path}: entry {i}: 'accuracy' must be a percent, got {row['accuracy']!r}")
    return rows


VALUE_HEAD_KEYS = ("heldout_rollouts", "heldout_correct_before", "value_auc_before", "value_auc_before_z",
                   "value_auc_after", "value_auc_after_z")


def value_head_summary(path) -> dict:
    """run -> its value-head numbers, for every run in the rl stage's summary that has them
    (Latent RL); {} when the file is absent (the rl stage has not run)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        runs = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: broken JSON ({e.msg}, line {e.lineno})") from None
    out = {}
    for run, v in runs.items():
        if isinstance(v, dict) and "value_auc_before" in v:
            # an ROC-AUC is null where the held-out rollouts were all right or all wrong
            bad = [k for k in VALUE_HEAD_KEYS if k not in v or not (_number(v[k]) or (v[k] is None and "auc" in k))]
            if bad:
                raise ReportError(f"{path}: run {run!r}: {', '.join(bad)} missing or not a finite number")
            out[run] = {k: v[k] for k in VALUE_HEAD_KEYS}
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _auc(auc, z) -> str:
    return "undefined (one class)" if auc is None else f"{auc:.3f} (z = {z:.1f})"


def _benchmark_mean(per: dict) -> float | None:
    """Mean accuracy over the four benchmark-role sets (None unless all four are there)."""
    if not all(s in per for s in BENCHMARK_SETS):
        return None
    return sum(per[s]["accuracy"] for s in BENCHMARK_SETS) / len(BENCHMARK_SETS)


def _change(before, after, percent: bool = True) -> str:
    """"31.0% -> 31.6% (+0.6)" (percent: accuracies in [0, 1]) or "8.4 -> 8.3" (tokens)."""
    if before is None or after is None:
        return "–"
    if not percent:
        return f"{before:.1f} -> {after:.1f}"
    return f"{100 * before:.1f}% -> {100 * after:.1f}% ({100 * (after - before):+.1f})"


# what the papers say about an RL comparison where no pair of published numbers gives it
# (sources: data/published_results.yaml's comments and docs/rl.md)
RL_PAPER_NOTES = {
    "atp_rl": "ATP-Latent (SFT + RL) 47.7% on the 4-set mean, +4.1 over SIM-CoT (LLaMA-1B); SFT-only row not read",
    "atp_rl_no_coherence": "ablation in the paper: the coherence reward helps (number not read)",
    "atp_rl_coherence_only": "no answer labels: +0.9 points (second-hand; against which row unclear)",
    "latent_rl": "below CoT-SFT (abstract); below LatR-SFT per a second-hand note (no number)",
}


def _paper_comparison(run: str, published: list[dict]) -> str:
    """A paper's start -> RL numbers for this run's comparison: the published rows of one
    paper and dataset for the run and for the method it starts from; else a note."""
    start = RL_START[run]
    for after in (p for p in published if p["method"] == run):
        before = [p for p in published if p["method"] == start and p["paper"] == after["paper"]
                  and p["dataset"] == after["dataset"]]
        if before:
            b, a = before[0]["accuracy"], after["accuracy"]
            return f"{b:.1f}% -> {a:.1f}% ({a - b:+.1f}), {after['model']}, {after['dataset']}"
    return RL_PAPER_NOTES.get(run, "–")


def results_markdown(summary: dict, published: list[dict] | None = None, value_head: dict | None = None) -> str:
    """Our method x test-set table (accuracy % / mean tokens), then the papers' numbers.
    `value_head`: run -> Latent RL's value-head ROC-AUC summary (reports/train/rl.json)."""
    sets = ordered({s for per in summary.values() for s in per}, TEST_SETS)
    # n goes in the header when every method saw the same test set, else in each cell
    ns = {s: {per[s]["n"] for per in summary.values() if s in per} for s in sets}
    header = ["method"] + [f"{s} (n={next(iter(ns[s]))})" if len(ns[s]) == 1 else s for s in sets]
    rows = []
    for method, per in summary.items():
        cells = [method]
        for s in sets:
            if s not in per:
                cells.append("–")
                continue
            m = per[s]
            cell = f"{100 * m['accuracy']:.1f}% / {m['tokens']:.1f}"
            cells.append(cell if len(ns[s]) == 1 else f"{cell} (n={m['n']})")
        rows.append(cells)

    lines = ["# Results", "",
             "Our models. Each cell is accuracy / mean generated tokens; "
             "n is the number of test examples.", ""]
    lines += _table(header, rows)

    # how accuracy falls with the number of reasoning steps (gsm: in distribution)
    with_steps = {m: per["gsm"]["by_steps"] for m, per in summary.items() if "by_steps" in per.get("gsm", {})}
    if with_steps:
        counts = sorted({k for v in with_steps.values() for k in v}, key=int)
        lines += ["", "## gsm accuracy by number of reasoning steps", "",
                  "Accuracy on the gsm problems that take k steps (n per cell in brackets).", ""]
        lines += _table(["method"] + [f"{k} steps" for k in counts],
                        [[m] + [f"{100 * v[k]['accuracy']:.1f}% ({v[k]['n']})" if k in v else "–" for k in counts]
                         for m, v in with_steps.items()])

    # ATP-Latent's thoughts read back: did it stop after the right number of groups, and do
    # its groups decode to the true steps?
    with_readout = {m: per["gsm"] for m, per in summary.items() if "readout_by_steps" in per.get("gsm", {})}
    if with_readout:
        counts = sorted({k for v in with_readout.values() for k in v["readout_by_steps"]}, key=int)
        lines += ["", "## ATP-Latent: thoughts read back on gsm", "",
                  "Stop accuracy (share of problems whose used step groups equal their steps, at most "
                  "max_latent_stage) / decoded-step accuracy (share of true steps that the step decoder "
                  "reads back exactly, in order), by number of steps (n in brackets).", ""]
        lines += _table(["method", "all"] + [f"{k} steps" for k in counts],
                        [[m, f"{100 * v['stop_accuracy']:.1f}% / {100 * v['decoded_step_accuracy']:.1f}%"]
                         + [f"{100 * r[k]['stop_accuracy']:.1f}% / {100 * r[k]['decoded_step_accuracy']:.1f}% "
                            f"({r[k]['n']})" if k in r else "–" for k in counts]
                         for m, v in with_readout.items() for r in [v["readout_by_steps"]]])

    # every RL run beside the checkpoint it started from, and the papers' same comparison
    runs = [m for m in summary if m in RL_START and RL_START[m] in summary]
    if runs:
        lines += ["", "## RL runs beside their starting checkpoints", "",
                  "Accuracy on every held-out set and its mean over the four in the roles of ATP-Latent's "
                  "benchmarks (" + ", ".join(BENCHMARK_SETS) + "), gsm tokens and coherence: start -> after "
                  "RL (change in points). Last column: what the papers report for the same comparison "
                  "(their models and data, not ours).", ""]
        sets_here = [s for s in sets if any(s in summary[m] for m in runs)]
        rl_rows = [[m, RL_START[m]]
                   + [_change(summary[RL_START[m]].get(s, {}).get("accuracy"), summary[m].get(s, {}).get("accuracy"))
                      for s in sets_here]
                   + [_change(_benchmark_mean(summary[RL_START[m]]), _benchmark_mean(summary[m])),
                      _change(summary[RL_START[m]].get("gsm", {}).get("tokens"), summary[m].get("gsm", {}).get("tokens"),
                              percent=False),
                      _change(summary[RL_START[m]].get("gsm", {}).get("coherence"),
                              summary[m].get("gsm", {}).get("coherence")),
                      _paper_comparison(m, published or [])]
                   for m in runs]
        lines += _table(["run", "starts from"] + sets_here + ["4-set mean", "gsm tokens", "gsm coherence", "papers"],
                        rl_rows)
        if value_head:
            lines += ["", "Latent RL's value head: ROC-AUC of a rollout's value (mean sigma(V) over its latent "
                      "positions) against its correctness, on held-out training questions the head never saw; "
                      "z against chance (Mann-Whitney).", ""]
            lines += _table(["run", "held-out rollouts", "correct (start)", "ROC-AUC before RL", "after RL"],
                            [[run, str(v["heldout_rollouts"]), f"{100 * v['heldout_correct_before']:.1f}%",
                              _auc(v["value_auc_before"], v["value_auc_before_z"]),
                              _auc(v["value_auc_after"], v["value_auc_after_z"])]
                             for run, v in value_head.items()])

    # svamp combines two or three variations that training shows only alone: which hurt most
    with_variation = {m: per["svamp"]["by_variation"] for m, per in summary.items()
                      if "by_variation" in per.get("svamp", {})}
    if with_variation:
        kinds = sorted({k for v in with_variation.values() for k in v})
        lines += ["", "## svamp accuracy by combination of variations", "",
                  "Accuracy on the svamp problems that combine these variations (n per cell in brackets).", ""]
        lines += _table(["method"] + [k.replace("+", " + ") for k in kinds],
                        [[m] + [f"{100 * v[k]['accuracy']:.1f}% ({v[k]['n']})" if k in v else "–" for k in kinds]
                         for m, v in with_variation.items()])

    lines += ["", "## Published numbers (from the papers, not our runs)", "", SCALE_CAVEAT, ""]
    if published:
        prow = []
        for p in published:
            acc = f"{p['accuracy']:.1f}%"
            if p.get("accuracy_std") is not None:
                acc += f" ± {p['accuracy_std']}"
            tokens = "–" if p.get("tokens") is None else f"{p['tokens']:.1f}"
            prow.append([p["paper"], p["table"], p["model"], p["dataset"],
                         p.get("label", p["method"]), p["method"], acc, tokens])
        lines += _table(["paper", "table", "model", "dataset", "row", "our method",
                         "accuracy", "tokens"], prow)
    else:
        lines.append("(no published numbers given)")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path) -> None:
    """Grouped accuracy bars per test set, and mean tokens per method on gsm; saves a PNG."""
    methods = list(summary)
    sets = ordered({s for per in summary.values() for s in per}, TEST_SETS)
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}  # same colour in both panels

    # Figure + the Agg canvas directly: no pyplot, so no global backend state to fight
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_acc, ax_tok = fig.subplots(1, 2, width_ratios=[3, 1])

    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j, s in enumerate(sets) if s in summary[m]]
        ys = [100 * summary[m][s]["accuracy"] for s in sets if s in summary[m]]
        ax_acc.bar(xs, ys, width, label=m, color=colors[m])
    ax_acc.set_xticks(range(len(sets)), sets)
    ax_acc.set_ylim(0, 100)
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("accuracy per test set")
    # legend under the figure: inside the axes it hides the tallest bars
    fig.legend(loc="outside lower center", ncols=min(len(methods), 9), fontsize="small")

    on_gsm = [m for m in methods if "gsm" in summary[m]]
    ax_tok.bar(range(len(on_gsm)), [summary[m]["gsm"]["tokens"] for m in on_gsm],
               color=[colors[m] for m in on_gsm])
    ax_tok.set_xticks(range(len(on_gsm)), on_gsm, rotation=45, ha="right")
    ax_tok.set_ylabel("mean generated tokens")
    ax_tok.set_title("tokens on gsm" if on_gsm else "tokens on gsm (no gsm results)")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
