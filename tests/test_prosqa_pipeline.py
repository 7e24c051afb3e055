"""The graph task's pipeline (prosqa/dvc.yaml): generated from the root pipeline and up to
date with it, and `dvc repro prosqa/dvc.yaml` runs every method end to end on tiny params."""

import importlib.util
import json
import shutil

import pytest
import yaml

from helpers import TINY, merge
from test_pipeline import ROOT, sh


def make_module():
    spec = importlib.util.spec_from_file_location("make_prosqa_pipeline", ROOT / "scripts" / "make_prosqa_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prosqa_pipeline_is_the_root_pipeline_generated():
    assert (ROOT / "prosqa" / "dvc.yaml").read_text() == make_module().pipeline(), \
        "prosqa/dvc.yaml is stale: run python scripts/make_prosqa_pipeline.py"


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_dvc_repro_of_the_prosqa_pipeline(tmp_path):
    repo = tmp_path / "repo"
    (repo / "prosqa").mkdir(parents=True)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", repo)  # dvc reads every dvc.yaml of the repo, and its params
    shutil.copy(ROOT / "params.yaml", repo)
    shutil.copy(ROOT / "prosqa" / "dvc.yaml", repo / "prosqa")
    (repo / "data").mkdir()
    shutil.copy(ROOT / "data" / "published_prosqa.yaml", repo / "data")
    params = merge(yaml.safe_load((ROOT / "prosqa" / "params.yaml").read_text()), TINY)
    params = merge(params, {"model": {"n_positions": 256},
                            "data": {"prosqa": {"concepts": [7, 8], "steps": [3, 4]}},
                            "train": {"eval_max_new_tokens": 48}, "evaluate": {"max_new_tokens": 48},
                            "rl": {"cot_max_new_tokens": 48}})
    (repo / "prosqa" / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "pipeline", cwd=repo)
    sh("dvc", "repro", "prosqa/dvc.yaml", cwd=repo)

    summary = json.loads((repo / "reports" / "prosqa" / "metrics.json").read_text())
    methods = set(params["coconut"]["variants"]) | set(params["atp"]["variants"]) | set(params["rl"]["runs"])
    assert set(summary) == {"cot", "nocot"} | methods
    assert all(set(per) == {"prosqa"} for per in summary.values())  # the one held-out set
    assert all(0 <= per["prosqa"]["accuracy"] <= 1 for per in summary.values())
    # the task's data: sentence steps, the graph kept with each problem
    row = json.loads((repo / "prosqa" / "data" / "prepared" / "test_prosqa.jsonl").read_text().splitlines()[0])
    assert row["meta"]["task"] == "prosqa" and row["steps"][0].endswith(".") and " is a " in row["answer"]
    stats = json.loads((repo / "prosqa" / "data" / "prepared" / "stats.json").read_text())
    assert 3 <= stats["graphs"]["train"]["shortest_path"] <= 4
    assert "ProsQA" in (repo / "reports" / "prosqa" / "results.md").read_text()  # the paper's column
    # the paper's analyses: path classes (CoT, Coconut after k thoughts) and the latent-BFS probe
    analysis = json.loads((repo / "reports" / "prosqa" / "analysis.json").read_text())
    k_max = params["coconut"]["c_thought"] * params["coconut"]["max_latent_stage"]
    assert set(analysis["coconut"]) == set(analysis["probe"]) == {str(k) for k in range(k_max + 1)}
    assert abs(sum(analysis["cot"].values()) - 1) < 1e-9
    assert all(0 <= p["frontier_value_mass"] <= 1 + 1e-6 for p in analysis["probe"].values())
    # the two options' values are shares of the same renormalised distribution
    assert all(0 <= p["value_right_option"] + p["value_wrong_option"] <= 1 + 1e-6 for p in analysis["probe"].values())
    assert 0.5 < analysis["baselines"]["random_walk"] <= 1  # the wrong option is never reachable
    # the default pipeline's outputs are untouched
    assert not (repo / "reports" / "metrics.json").exists() and not (repo / "data" / "prepared").exists()
