"""params.yaml -> typed, validated dataclasses.

One dataclass per params.yaml section. `load_params` rejects unknown keys and wrong
types with a message naming the key (a typo in `dvc exp run -S` must not be ignored).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atp import VARIANTS as ATP_VARIANTS, AtpConfig
from .coconut import VARIANTS as COCONUT_VARIANTS, CoconutConfig
from .generator import GeneratorConfig
from .prosqa import ProsqaConfig
from .rl import RUNS as RL_RUNS, RlConfig

# every method the pipeline knows: the SFT baselines (train stage), Coconut and its
# ablations, ATP-Latent and its ablations
SFT_METHODS = ("cot", "nocot")
METHODS = SFT_METHODS + COCONUT_VARIANTS + ATP_VARIANTS + tuple(RL_RUNS)


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class BaseConfig:
    seed: int = 0
    threads: int = 2  # torch intra-op threads; the machines have 2 cores
    checkpoint_every: int = 0  # training steps between resumable checkpoints (resume.py); 0: none
    resume_dir: str = ".resume"  # where they live: outside every stage's outputs

    def __post_init__(self):
        if self.threads < 1:
            raise ConfigError(f"base.threads must be >= 1, got {self.threads}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"base.checkpoint_every must be >= 0 (0: no checkpoints), got {self.checkpoint_every}")
        if not self.resume_dir:
            raise ConfigError("base.resume_dir must name a folder")


@dataclass(frozen=True)
class DataConfig:
    # "generator": the built-in word-problem generator; "prosqa": the graph task's generator
    # (prosqa.py: train, valid, test_prosqa). Otherwise `files` maps split names (train,
    # valid, test_gsm, test_svamp, ...) to local files or hub dataset ids.
    source: str = "generator"
    files: dict = field(default_factory=dict)
    format: str = "auto"  # auto | icot | gsm8k | json | hub | prosqa | prontoqa (see loaders.py)
    skip_invalid: bool = False  # skip malformed rows (they are reported) instead of failing
    train_size: int = 60_000
    valid_size: int = 300
    test_size: int = 500
    train_steps: tuple = (2, 4)
    multiarith_steps: tuple = (2, 3)
    longer_steps: tuple = (5, 6)
    hard_factor: tuple = (10, 12)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    prosqa: ProsqaConfig = field(default_factory=ProsqaConfig)  # data.source: prosqa

    def __post_init__(self):
        if self.source not in ("generator", "prosqa", "files"):
            raise ConfigError(f"data.source must be 'generator', 'prosqa' or 'files', got {self.source!r}")
        if self.source == "files" and "train" not in self.files:
            raise ConfigError("data.files needs at least a 'train' entry when data.source is 'files'")
        for name in ("train_size", "valid_size", "test_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1")
        for name in ("train_steps", "multiarith_steps", "longer_steps", "hard_factor"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ConfigError(f"data.{name} must be [lo, hi] with 1 <= lo <= hi, got {[lo, hi]}")
        if self.longer_steps[0] <= self.train_steps[1]:
            raise ConfigError("data.longer_steps must start above data.train_steps' maximum")


@dataclass(frozen=True)
class ModelConfig:
    # empty: a GPT-2-style model built from the numbers below and trained from scratch.
    # Otherwise a local directory (or hub id, needs network) of any AutoModelForCausalLM.
    name_or_path: str = ""
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ConfigError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    bf16: bool = False
    eval_every: int = 400  # validation accuracy (greedy generation) every N steps
    eval_size: int = 300
    # validation's own generation settings, so that the training stages depend on no
    # `evaluate.*` key (an evaluation setting then reruns only evaluation)
    eval_batch_size: int = 250
    eval_max_new_tokens: int = 96
    log_every: int = 10
    # batches of similar length (less padding). On generated data a batch then holds one
    # step count, and CoT learned less from them: 94.6% on gsm against 97.8% with random
    # batches, which cost 1.16x the columns (docs/latent_core.md)
    length_buckets: bool = False

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "eval_every", "eval_size", "log_every", "eval_batch_size",
                     "eval_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "min_lr_ratio", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 250
    max_new_tokens: int = 96
    limit: int = 0  # 0: every example of each test set
    bf16: bool = False  # generation under bf16 autocast (on a GPU: faster; greedy outputs may differ)


def _coerce(value, tp, key: str):
    """Check (and lightly convert) one YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls, data, key: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{key}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ checks
        raise ConfigError(f"{key}: {e}") from None


@dataclass(frozen=True)
class Params:
    base: BaseConfig
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    train_overrides: dict  # method -> {train key: value}
    evaluate: EvaluateConfig
    coconut: CoconutConfig
    atp: AtpConfig
    rl: RlConfig

    def train_for(self, method: str) -> TrainConfig:
        """The train section with the method's overrides applied (SFT methods)."""
        if method not in SFT_METHODS:
            raise ConfigError(f"train: {method!r} is not trained by the train stage; it trains {list(SFT_METHODS)}")
        overrides = self.train_overrides.get(method) or {}
        merged = {**dataclasses.asdict(self.train), **overrides}
        return from_dict(TrainConfig, merged, f"train.overrides.{method}")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {list(METHODS)}")


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no params file at {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    known = {"base", "data", "model", "train", "evaluate", "coconut", "atp", "rl"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; known: {sorted(known)}")
    train_raw = dict(raw.get("train") or {})
    overrides = train_raw.pop("overrides", None) or {}
    for method in overrides:
        if method not in SFT_METHODS:
            raise ConfigError(f"{path}: train.overrides.{method}: unknown method; known: {list(SFT_METHODS)}")
    params = Params(
        base=from_dict(BaseConfig, raw.get("base"), "base"),
        data=from_dict(DataConfig, raw.get("data"), "data"),
        model=from_dict(ModelConfig, raw.get("model"), "model"),
        train=from_dict(TrainConfig, train_raw, "train"),
        train_overrides=overrides,
        evaluate=from_dict(EvaluateConfig, raw.get("evaluate"), "evaluate"),
        coconut=from_dict(CoconutConfig, raw.get("coconut"), "coconut"),
        atp=from_dict(AtpConfig, raw.get("atp"), "atp"),
        rl=from_dict(RlConfig, raw.get("rl"), "rl"),
    )
    for method in overrides:
        params.train_for(method)  # validate the merged sections now, not at stage time
    return params
