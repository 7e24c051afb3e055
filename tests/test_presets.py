"""The paper-scale presets (latent_reasoning/presets): each one's params run end to end,
every stage it trains and evaluates, with a tiny model of the preset's family saved at its
model path and small files in the real formats at its data paths. Only the sizes (steps,
batches, data) are shrunk; everything else is the preset's."""

import json
import shutil

import pytest
import yaml
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from helpers import REPO_PARAMS, merge, run_stage
from latent_reasoning import presets
from latent_reasoning.config import load_params
from test_pretrained import own_tokenizer

# every size a preset sets, shrunk to seconds (the preset's other settings stay)
SMALL = {
    "base": {"threads": 1, "checkpoint_every": 1},
    "train": {"max_steps": 2, "batch_size": 4, "eval_every": 2, "eval_size": 4, "eval_batch_size": 4,
              "eval_max_new_tokens": 12, "log_every": 1},
    "evaluate": {"batch_size": 8, "max_new_tokens": 12},
    "coconut": {"steps_per_stage": 1, "final_stage_steps": 1, "batch_size": 4, "eval_every": 1},
    "rl": {"steps": 1, "questions": 2, "group_size": 2, "minibatch": 4, "max_new_tokens": 6, "cot_max_new_tokens": 12,
           "eval_every": 0, "latent_rl": {"value_questions": 20, "heldout_questions": 4, "value_epochs": 1,
                                          "pos_weight": 1.0}},
}

# a few problems as GSM8k-Aug (iCoT text) and ATP-Latent's test JSON (SVAMP-like: no steps)
ICOT = ["Tom has 3 apples and buys 4 more. He eats 2. How many are left?||<<3+4=7>> <<7-2=5>> #### 5",
        "A box holds 6 pens. How many pens are in 3 boxes?||<<6*3=18>> #### 18",
        "Ann had 20 cards and gave 5 away, then got 2. How many now?||<<20-5=15>> <<15+2=17>> #### 17",
        "Bo reads 4 pages a day for 5 days, then 3 more. How many pages?||<<4*5=20>> <<20+3=23>> #### 23"]


def write_data(files: dict, root):
    for split, rel in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".txt":
            path.write_text("\n".join(ICOT * (30 if split == "train" else 2)) + "\n")
        else:
            rows = [{"question": line.split("||")[0], "answer": f"{float(line.split('#### ')[1]):.1f}",
                     "steps": [] if "svamp" in split or "multiarith" in split
                     else line.split("||")[1].split(" ####")[0].split()} for line in ICOT * 2]
            path.write_text(json.dumps(rows, indent=1))


def save_tiny(kind: str, path):
    tok = own_tokenizer()
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=512,
                                           bos_token_id=0, eos_token_id=1))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=512, bos_token_id=0, eos_token_id=1))
    model.save_pretrained(path)
    tok.save_pretrained(path)


@pytest.mark.parametrize("name, family", [("coconut_gpt2_gsm8k", "gpt2"), ("atp_llama1b_gsm8k", "llama")])
def test_preset_runs_every_stage_end_to_end(name, family, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preset = presets.preset(name)
    save_tiny(family, tmp_path / preset["model"]["name_or_path"])
    write_data(preset["data"]["files"], tmp_path)
    shutil.copy(REPO_PARAMS.parent / "data/published_results.yaml", tmp_path / "data")
    presets.apply(name, REPO_PARAMS, tmp_path / "params.yaml")
    applied = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert merge(applied, preset) == applied  # every key of the preset is in the params written
    small = merge(applied, SMALL)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small, sort_keys=False))
    params = load_params(tmp_path / "params.yaml")

    run_stage(monkeypatch, "prepare")
    run_stage(monkeypatch, "tokenizer")
    methods = ["cot", "nocot"]
    for method in methods:
        run_stage(monkeypatch, "train", "--method", method)
    run_stage(monkeypatch, "coconut")
    run_stage(monkeypatch, "atp")
    run_stage(monkeypatch, "rl")
    methods += list(params.coconut.variants) + list(params.atp.variants) + list(params.rl.runs)
    for method in methods:
        run_stage(monkeypatch, "evaluate", "--method", method)
    run_stage(monkeypatch, "report")

    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert set(metrics) == set(methods)
    sets = {k[len("test_"):] for k in preset["data"]["files"] if k.startswith("test_")}
    for method in methods:
        assert set(metrics[method]) == sets, method  # every test set of the preset, for every method
        assert all(0 <= m["accuracy"] <= 1 for m in metrics[method].values())
    config = json.loads((tmp_path / "models/cot/config.json").read_text())
    assert config["model_type"] == family  # the preset's model family all the way through
    assert not (tmp_path / ".resume").exists()  # every run finished and removed its checkpoint


def test_an_unknown_preset_is_an_error_naming_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="coconut_gpt2_gsm8k"):
        presets.apply("gpt5_everything", REPO_PARAMS, tmp_path / "params.yaml")
    assert not (tmp_path / "params.yaml").exists()
