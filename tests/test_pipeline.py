"""`dvc repro` of the whole pipeline on tiny params in a temp git+DVC repo, then a
`dvc exp run -S` on a training param and `dvc metrics diff`."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import write_params
from latent_reasoning import coconut, rl

ROOT = Path(__file__).resolve().parents[1]


def sh(*cmd, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_dvc_repro_then_exp_run(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / "data").mkdir()
    shutil.copy(ROOT / "data" / "published_results.yaml", repo / "data")
    write_params(repo / "params.yaml")
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "pipeline", cwd=repo)  # as a clone is (DVCLive needs a commit)
    sh("dvc", "repro", cwd=repo)

    summary = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(summary) == {"cot", "nocot", "coconut", "no_curriculum", "no_thought", "pause_as_thought",
                            "pause_token", "atp_vae"} | set(rl.RUNS)
    # every RL run trained from its start, and the ATP runs' coherence is in the metrics
    rl_trained = json.loads((repo / "reports" / "train" / "rl.json").read_text())
    assert set(rl_trained) == set(rl.RUNS)
    assert all(0 <= summary[run]["gsm"]["coherence"] <= 1 for run in rl.RUNS if rl.policy_kind(run) == "atp")
    assert "RL runs beside their starting checkpoints" in (repo / "reports" / "results.md").read_text()
    # Latent RL fitted its value head and measured it on held-out rollouts, before and after
    head = rl_trained["latent_rl"]
    assert head["method"] == "latent_rl" and head["heldout_rollouts"] == 20 and head["value_rollouts"] == 40
    assert all(head[k] is None or 0 <= head[k] <= 1 for k in ("value_auc_before", "value_auc_after"))
    assert (repo / "models" / "rl" / "latent_rl" / "value_head.safetensors").exists()
    assert "Latent RL's value head" in (repo / "reports" / "results.md").read_text()
    # ATP-Latent's thoughts read back, scored per test set
    assert 0 <= summary["atp_vae"]["gsm"]["stop_accuracy"] <= 1
    assert 0 <= summary["atp_vae"]["gsm"]["decoded_step_accuracy"] <= 1
    decoded = [json.loads(line)["decoded_steps"]
               for line in (repo / "reports" / "eval" / "atp_vae" / "predictions" / "gsm.jsonl").open()]
    assert len(decoded) == 16 and all(isinstance(d, list) for d in decoded)
    assert "ATP-Latent: thoughts read back" in (repo / "reports" / "results.md").read_text()
    # the try-it-yourself command on the trained model
    asked = sh("python", "-m", "latent_reasoning.ask", "--method", "atp_vae",
               "Ava has 12 apples. Ben has 5 more than Ava. How many apples does Ben have?", cwd=repo)
    assert "answer:" in asked and "thoughts used:" in asked, asked
    for method, sets in summary.items():
        assert set(sets) == {"gsm", "gsm_hard", "svamp", "multiarith", "longer"}
        for m in sets.values():
            assert m["n"] == 16 and 0 <= m["accuracy"] <= 1 and m["tokens"] >= 0
    # the coconut stage trained every variant (all at once, one process each: the default jobs)
    trained = json.loads((repo / "reports" / "train" / "coconut.json").read_text())
    assert set(trained) == set(summary) - {"cot", "nocot", "atp_vae"} - set(rl.RUNS)
    assert all((coconut.model_dir(variant, repo / coconut.MODELS_ROOT) / "config.json").exists() for variant in trained)
    assert "cot" in (repo / "reports" / "results.md").read_text()
    assert (repo / "reports" / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert (repo / "dvc.lock").exists()
    # an up-to-date pipeline reruns nothing
    assert "didn't change" in sh("dvc", "repro", cwd=repo) or "up to date" in sh("dvc", "status", cwd=repo)

    # `dvc exp show` leads with the results: its first metric columns are reports/metrics.json's
    header = sh("dvc", "exp", "show", "--csv", "--no-pager", cwd=repo).splitlines()[0].split(",")
    metric_columns = header[header.index("parent") + 1:]
    assert metric_columns[:2] == ["cot.gsm.accuracy", "cot.gsm.tokens"], header

    # an evaluation setting reruns only evaluation: every training stage stays up to date
    # whichever evaluate.* key changes
    pristine = (repo / "params.yaml").read_text()
    evaluate_stages = {f"evaluate@{m}" for m in ("cot", "nocot")} | {f"evaluate_coconut@{v}" for v in trained} \
        | {"evaluate_atp@atp_vae"} | {f"evaluate_rl@{run}" for run in rl.RUNS}
    for key, value in (("max_new_tokens", 33), ("batch_size", 7), ("limit", 5)):
        params = yaml.safe_load(pristine)
        params["evaluate"][key] = value
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        stale = set(json.loads(sh("dvc", "status", "--json", cwd=repo)))
        assert stale == evaluate_stages, (key, stale)
    # an RL setting reruns only the rl stage (and, once it has run, what reads its models)
    params = yaml.safe_load(pristine)
    params["rl"]["coherence_weight"] = 0.5
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(sh("dvc", "status", "--json", cwd=repo))) == {"rl"}
    (repo / "params.yaml").write_text(pristine)

    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "baseline", cwd=repo)
    # one method's override reruns that method alone
    params = yaml.safe_load(pristine)
    params["train"]["overrides"]["nocot"]["max_steps"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(sh("dvc", "status", "--json", cwd=repo))) == {"train@nocot"}
    (repo / "params.yaml").write_text(pristine)
    # one training stage is enough to show the param flowing into its metrics (and quick)
    sh("dvc", "exp", "run", "-S", "train.overrides.nocot.max_steps=3", "train@nocot", cwd=repo)
    diff = sh("dvc", "metrics", "diff", "--json", cwd=repo)
    changed = json.loads(diff)
    # the training summary records the new step count
    assert any("best_step" in key or "final_loss" in key
               for metrics in changed.values() for key in metrics), diff
