#!/bin/bash
# One Coconut trial: the committed params.yaml with one edit, one thread, the `coconut`
# variant alone from the committed CoT model, then its evaluation on every test set.
# Run from the repository root after `dvc repro` (it needs data/prepared and models/cot).
#   usage: run.sh OUT_DIR 'python statement editing the params dict p'
# The two trials of this folder:
#   run.sh /tmp/min_lr_0     'p["train"]["min_lr_ratio"] = 0.0'
#   run.sh /tmp/curriculum_50 'p["coconut"]["steps_per_stage"] = 50; p["coconut"]["final_stage_steps"] = 1350'
set -euo pipefail
out=$1; edit=$2
mkdir -p "$out"
python - "$out" "$edit" <<'PY'
import sys, yaml
out, edit = sys.argv[1], sys.argv[2]
p = yaml.safe_load(open("params.yaml"))
p["base"]["threads"] = 1  # as each variant trains in the pipeline
exec(edit)
yaml.safe_dump(p, open(f"{out}/params.yaml", "w"), sort_keys=False)
PY
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
python -m latent_reasoning.stages.coconut --variant coconut --params "$out/params.yaml" \
    --out "$out/models" --live-dir "$out/live" --summary "$out/train_summary.json"
python -m latent_reasoning.stages.evaluate --method coconut --params "$out/params.yaml" \
    --model "$out/models/coconut" --out "$out/eval"
