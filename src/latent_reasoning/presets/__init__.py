"""Paper-scale presets: params overrides that reproduce the papers' settings on real models
and data (docs/scale.md says what each needs and how long it would take).

    coconut_gpt2_gsm8k   Coconut's GPT-2 (124M) on GSM8k-Aug, its ablations, RL from it
    atp_llama1b_gsm8k    ATP-Latent's Llama-3.2-1B on GSM8k-Aug with its four test sets

`python -m latent_reasoning.presets NAME` writes params.yaml: the repo's defaults with the
preset's sections merged in (a key the preset sets replaces the default; `git checkout
params.yaml` restores the default pipeline). Then `dvc repro`, or under N GPUs each stage
with `accelerate launch --num_processes N -m latent_reasoning.stages.<stage>`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).parent
NAMES = tuple(sorted(p.stem for p in HERE.glob("*.yaml")))


def merge(base: dict, update: dict) -> dict:
    """`update` over `base`, section by section (nested dicts merged, anything else replaced)."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def preset(name: str) -> dict:
    if name not in NAMES:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(NAMES)}")
    return yaml.safe_load((HERE / f"{name}.yaml").read_text())


def apply(name: str, defaults: str | Path = "params.yaml", out: str | Path = "params.yaml") -> dict:
    """Write `out`: `defaults` with preset `name` merged in; checked as load_params checks
    every params file. Returns the merged params."""
    from ..config import load_params

    params = merge(yaml.safe_load(Path(defaults).read_text()), preset(name))
    text = (f"# params.yaml from the preset {name} (src/latent_reasoning/presets/{name}.yaml) over the "
            f"defaults;\n# `git checkout params.yaml` restores the default pipeline\n"
            + yaml.safe_dump(params, sort_keys=False))
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(text)
    load_params(tmp)  # a preset that no longer matches the config is an error here, not at a stage
    tmp.replace(out)
    return params
