import pytest
import yaml

from latent_reasoning.config import ConfigError, load_params

from helpers import write_params

ROOT_PARAMS = __import__("pathlib").Path(__file__).resolve().parents[1] / "params.yaml"


def test_repo_params_load():
    params = load_params(ROOT_PARAMS)
    assert params.train_for("cot").max_steps >= 1
    assert params.train_for("nocot").batch_size >= 1


def test_unknown_key_is_named(tmp_path):
    path = write_params(tmp_path / "p.yaml", train={"max_stesp": 3})
    with pytest.raises(ConfigError, match="max_stesp"):
        load_params(path)


def test_wrong_type_and_bad_value_are_named(tmp_path):
    with pytest.raises(ConfigError, match="train.lr"):
        load_params(write_params(tmp_path / "a.yaml", train={"lr": "fast"}))
    with pytest.raises(ConfigError, match="weight_decay"):
        load_params(write_params(tmp_path / "b.yaml", train={"weight_decay": -0.1}))
    with pytest.raises(ConfigError, match="together_prob"):
        load_params(write_params(tmp_path / "c.yaml", data={"generator": {"together_prob": 1.5}}))


def test_unknown_method_is_named(tmp_path):
    params = load_params(write_params(tmp_path / "p.yaml"))
    with pytest.raises(ConfigError, match="bogus"):
        params.train_for("bogus")
    path = tmp_path / "q.yaml"
    raw = yaml.safe_load(write_params(path).read_text())
    raw["train"]["overrides"] = {"bogus": {"max_steps": 1}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="bogus"):
        load_params(path)


def test_overrides_apply_per_method(tmp_path):
    path = tmp_path / "p.yaml"
    raw = yaml.safe_load(write_params(path).read_text())
    raw["train"]["overrides"] = {"nocot": {"max_steps": 2}}
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    assert params.train_for("nocot").max_steps == 2
    assert params.train_for("cot").max_steps == raw["train"]["max_steps"]


def test_dvc_yaml_lists_every_train_key_for_the_stages_that_read_the_train_section():
    """The training stages list the train keys one by one (so that one method's overrides
    rerun only that method): a new TrainConfig field must be listed too, or changing it
    would leave their outputs wrongly up to date."""
    import dataclasses
    from latent_reasoning.config import TrainConfig

    stages = yaml.safe_load((ROOT_PARAMS.parent / "dvc.yaml").read_text())["stages"]
    want = {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
    for name in ("train", "coconut", "atp"):
        stage = stages[name].get("do", stages[name])
        listed = {p for p in stage["params"] if isinstance(p, str)}
        assert want <= listed, f"dvc.yaml stage {name} does not list {sorted(want - listed)}"
        assert "train" not in listed  # the whole section would include every method's overrides
    assert "train.overrides.${item}" in stages["train"]["do"]["params"]
