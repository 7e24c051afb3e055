import json
from pathlib import Path

import pytest

from latent_reasoning.report import (
    SCALE_CAVEAT, ReportError, collect, load_published, plot, results_markdown, value_head_summary, write_summary,
)
from latent_reasoning.stages.report import main

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "data" / "published_results.yaml"


def metric(acc, tokens, n=200):
    return {"accuracy": acc, "tokens": tokens, "n": n, "examples_per_s": 50.0}


def make_eval(root, runs: dict) -> Path:
    """runs: method -> the metrics.json content (a dict, or a raw string to write as is)."""
    for method, content in runs.items():
        d = root / "eval" / method
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return root / "eval"


@pytest.fixture
def eval_dir(tmp_path):
    # written in a scrambled order on purpose: the report must reorder both axes
    return make_eval(tmp_path, {
        "coconut": {"svamp": metric(0.61, 6.0), "gsm": metric(0.80, 8.2)},
        "my_new_method": {"gsm": metric(0.5, 3.0)},
        "cot": {"zzz_set": metric(0.2, 40.0, n=50), "gsm": metric(0.934, 25.1),
                "gsm_hard": metric(0.5, 31.0, n=100), "svamp": metric(0.7, 20.0)},
        "nocot": {"gsm": metric(0.3, 2.0), "svamp": metric(0.4, 2.0)},
    })


def test_collect_orders_and_keeps_only_the_summary_fields(eval_dir):
    s = collect(eval_dir)
    assert list(s) == ["cot", "nocot", "coconut", "my_new_method"]
    assert list(s["cot"]) == ["gsm", "gsm_hard", "svamp", "zzz_set"]
    assert s["cot"]["gsm"] == {"accuracy": 0.934, "tokens": 25.1, "n": 200}


def test_write_summary_round_trips(eval_dir, tmp_path):
    s = collect(eval_dir)
    out = tmp_path / "reports" / "metrics.json"
    write_summary(s, out)
    assert json.loads(out.read_text()) == s
    assert list(json.loads(out.read_text())) == ["cot", "nocot", "coconut", "my_new_method"]


def test_markdown_has_our_numbers_and_the_published_table(eval_dir):
    md = results_markdown(collect(eval_dir), load_published(PUBLISHED))
    ours, theirs = md.split("## Published numbers")
    assert "93.4% / 25.1" in ours and "80.0% / 8.2" in ours and "61.0% / 6.0" in ours
    assert "gsm (n=200)" in ours and "gsm_hard (n=100)" in ours
    header = next(line for line in ours.splitlines() if line.startswith("| method"))
    assert header.index("gsm (n=200)") < header.index("gsm_hard") < header.index("svamp") < header.index("zzz_set")
    # a method without a test set gets a dash, not a made-up number
    nocot_row = next(line for line in ours.splitlines() if line.startswith("| nocot"))
    assert "–" in nocot_row
    assert SCALE_CAVEAT in theirs
    assert "GPT-2 (124M)" in theirs and "42.9% ± 0.2" in theirs and "34.1% ± 1.5" in theirs


def test_markdown_states_n_per_cell_when_methods_disagree(tmp_path):
    s = collect(make_eval(tmp_path, {"cot": {"gsm": metric(0.9, 20.0, n=500)},
                                     "nocot": {"gsm": metric(0.3, 2.0, n=100)}}))
    md = results_markdown(s, [])
    assert "90.0% / 20.0 (n=500)" in md and "30.0% / 2.0 (n=100)" in md
    assert "(no published numbers given)" in md


def test_plot_writes_a_png(eval_dir, tmp_path):
    out = tmp_path / "plots" / "results.png"
    plot(collect(eval_dir), out)
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, complaint", [
    ("{not json", "broken JSON"),
    ("[]", "non-empty object"),
    (json.dumps({"gsm": {"accuracy": 0.5, "n": 10}}), "missing 'tokens'"),
    (json.dumps({"gsm": metric(93.4, 25.0)}), "'accuracy' must be a number in [0, 1]"),
    (json.dumps({"gsm": metric(0.5, -1.0)}), "'tokens'"),
    (json.dumps({"gsm": metric(0.5, 2.0, n=0)}), "'n' must be a positive integer"),
    (json.dumps({"gsm": metric(0.5, 2.0, n=1.5)}), "'n' must be a positive integer"),
    (json.dumps({"gsm": {**metric(0.5, 2.0), "by_steps": {"2": {"accuracy": 50, "n": 3}}}}), "'by_steps'"),
    (json.dumps({"svamp": {**metric(0.5, 2.0), "by_variation": {"a+b": {"accuracy": 0.5}}}}), "'by_variation'"),
])
def test_malformed_metrics_file_is_named(tmp_path, content, complaint):
    eval_dir = make_eval(tmp_path, {"cot": {"gsm": metric(0.9, 20.0)}, "coconut": content})
    with pytest.raises(ReportError) as e:
        collect(eval_dir)
    assert str(eval_dir / "coconut" / "metrics.json") in str(e.value)
    assert complaint in str(e.value)


def test_empty_eval_dir_is_an_error(tmp_path):
    with pytest.raises(ReportError, match="no <method>/metrics.json"):
        collect(tmp_path)


def test_published_file_has_the_coconut_gsm8k_rows():
    rows = {(r["method"], r["test_set"]): r for r in load_published(PUBLISHED)
            if r["paper"].startswith("Hao et al. 2024")}
    expected = {"cot": (42.9, 25.0), "nocot": (16.5, 2.2), "coconut": (34.1, 8.2),
                "icot": (30.0, 2.2), "pause_token": (16.4, 2.2), "no_curriculum": (14.4, 8.2),
                "no_thought": (21.6, 2.3), "pause_as_thought": (24.1, 2.2)}
    assert {m: (rows[m, "gsm"]["accuracy"], rows[m, "gsm"]["tokens"]) for m in expected} == expected
    assert all(r["model"] == "GPT-2 (124M)" and r["table"] == "Table 1" for r in rows.values())


def test_malformed_published_file_is_named(tmp_path):
    bad = tmp_path / "published.yaml"
    bad.write_text("- paper: x\n  accuracy: 42.9\n")
    with pytest.raises(ReportError, match=f"{bad}: entry 0 is missing"):
        load_published(bad)


def test_cli_writes_all_three_outputs(eval_dir, tmp_path, capsys):
    out = tmp_path / "reports"
    main(["--eval-dir", str(eval_dir), "--published", str(PUBLISHED), "--out-dir", str(out)])
    assert json.loads((out / "metrics.json").read_text())["cot"]["gsm"]["accuracy"] == 0.934
    assert "93.4% / 25.1" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "4 methods" in capsys.readouterr().out


def test_cli_bad_input_exits_with_the_file_name(tmp_path):
    eval_dir = make_eval(tmp_path, {"cot": "{oops"})
    with pytest.raises(SystemExit) as e:
        main(["--eval-dir", str(eval_dir), "--published", str(PUBLISHED), "--out-dir", str(tmp_path / "r")])
    assert "cot/metrics.json" in str(e.value.code)


def test_markdown_has_gsm_accuracy_by_number_of_steps(tmp_path):
    by_steps = {"3": {"accuracy": 0.5, "n": 4}, "2": {"accuracy": 0.75, "n": 4}}
    s = collect(make_eval(tmp_path, {"coconut": {"gsm": {**metric(0.625, 9.0, n=8), "by_steps": by_steps}},
                                     "cot": {"gsm": metric(0.9, 20.0, n=8)}}))
    assert list(s["coconut"]["gsm"]["by_steps"]) == ["2", "3"]  # ordered by step count
    md = results_markdown(s)
    table = md.split("## gsm accuracy by number of reasoning steps")[1].split("## Published")[0]
    assert "| method | 2 steps | 3 steps |" in table
    assert "| coconut | 75.0% (4) | 50.0% (4) |" in table
    assert "| cot" not in table  # no per-step numbers for it: no made-up row


def test_markdown_has_svamp_accuracy_by_combination(tmp_path):
    by_variation = {"reordered+distractor": {"accuracy": 0.5, "n": 2}, "distractor+other_quantity": {"accuracy": 1.0, "n": 2}}
    s = collect(make_eval(tmp_path, {"cot": {"gsm": metric(0.9, 20.0, n=4),
                                             "svamp": {**metric(0.75, 20.0, n=4), "by_variation": by_variation}}}))
    assert list(s["cot"]["svamp"]["by_variation"]) == ["distractor+other_quantity", "reordered+distractor"]
    table = results_markdown(s).split("## svamp accuracy by combination of variations")[1].split("## Published")[0]
    assert "| method | distractor + other_quantity | reordered + distractor |" in table
    assert "| cot | 100.0% (2) | 50.0% (2) |" in table


def test_markdown_puts_each_rl_run_beside_its_start(tmp_path):
    four = {s: metric(0.5, 8.0, n=4) for s in ("gsm_hard", "svamp", "multiarith")}
    s = collect(make_eval(tmp_path, {
        "atp_vae": {"gsm": {**metric(0.25, 8.0, n=4), "coherence": 0.5}, **four},
        "atp_rl": {"gsm": {**metric(0.75, 6.0, n=4), "coherence": 0.75}, **four},
        "cot": {"gsm": metric(0.5, 20.0, n=4)},
        "grpo_cot": {"gsm": metric(1.0, 20.0, n=4)},
        "grpo_coconut": {"gsm": metric(1.0, 9.0, n=4)},  # its start (coconut) is missing: no row
    }))
    assert s["atp_rl"]["gsm"]["coherence"] == 0.75
    published = [{"paper": "P", "table": "T", "model": "M", "dataset": "D", "method": "cot", "accuracy": 60.0, "source": "s"},
                 {"paper": "P", "table": "T", "model": "M", "dataset": "D", "method": "grpo_cot", "accuracy": 70.5, "source": "s"}]
    table = results_markdown(s, published).split("## RL runs beside their starting checkpoints")[1].split("## Published")[0]
    assert "| run | starts from | gsm | gsm_hard | svamp | multiarith | 4-set mean | gsm tokens | gsm coherence | papers |" in table
    # 4-set mean: (0.25 + 3 x 0.5) / 4 = 43.8% -> (0.75 + 1.5) / 4 = 56.2%
    assert ("| atp_rl | atp_vae | 25.0% -> 75.0% (+50.0) | 50.0% -> 50.0% (+0.0) | 50.0% -> 50.0% (+0.0) | "
            "50.0% -> 50.0% (+0.0) | 43.8% -> 56.2% (+12.5) | 8.0 -> 6.0 | 50.0% -> 75.0% (+25.0) | ATP-Latent") in table
    # the paper's own pair of rows gives the comparison; a set a run lacks is a dash
    assert "| grpo_cot | cot | 50.0% -> 100.0% (+50.0) | – | – | – | – | 20.0 -> 20.0 | – | 60.0% -> 70.5% (+10.5), M, D |" in table
    assert "grpo_coconut" not in table
    assert "value head" not in table  # no Latent RL summary given


def test_markdown_reports_the_value_heads_roc_auc(tmp_path):
    s = collect(make_eval(tmp_path, {"coconut": {"gsm": metric(0.3, 9.0, n=4)},
                                     "latent_rl": {"gsm": metric(0.35, 9.0, n=4)}}))
    rl_json = tmp_path / "rl.json"
    head = {"heldout_rollouts": 512, "heldout_correct_before": 0.25, "value_auc_before": 0.62,
            "value_auc_before_z": 4.1, "value_auc_after": 0.63, "value_auc_after_z": 4.3}
    rl_json.write_text(json.dumps({"latent_rl": {"start": "coconut", **head}, "grpo_cot": {"start": "cot"}}))
    value_head = value_head_summary(rl_json)
    assert list(value_head) == ["latent_rl"]
    table = results_markdown(s, [], value_head).split("Latent RL's value head")[1]
    assert "| latent_rl | 512 | 25.0% | 0.620 (z = 4.1) | 0.630 (z = 4.3) |" in table
    assert value_head_summary(tmp_path / "absent.json") == {}
    rl_json.write_text(json.dumps({"latent_rl": {**head, "value_auc_after": None, "value_auc_after_z": None}}))
    assert "| latent_rl | 512 | 25.0% | 0.620 (z = 4.1) | undefined (one class) |" in results_markdown(
        s, [], value_head_summary(rl_json))
    rl_json.write_text(json.dumps({"latent_rl": {**head, "value_auc_after": float("nan")}}))
    with pytest.raises(ReportError, match=r"rl.json: run 'latent_rl': value_auc_after"):
        value_head_summary(rl_json)
