#!/bin/bash
# Coconut and no_curriculum with other seeds: the committed params.yaml with base.seed S
# (the order of the training batches) and one thread, as in the pipeline, each variant
# trained alone from the committed CoT model, then evaluated on every test set.
# Seed 0 is the pipeline's own run. Run from the repository root after `dvc repro`.
#   usage: run.sh OUT_DIR SEED VARIANT      e.g. run.sh /tmp/seed_1 1 coconut
set -euo pipefail
out=$1; seed=$2; variant=$3
mkdir -p "$out"
python - "$out" "$seed" <<'PY'
import sys, yaml
out, seed = sys.argv[1], int(sys.argv[2])
p = yaml.safe_load(open("params.yaml"))
p["base"]["threads"] = 1
p["base"]["seed"] = seed
yaml.safe_dump(p, open(f"{out}/params.yaml", "w"), sort_keys=False)
PY
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
python -m latent_reasoning.stages.coconut --variant "$variant" --params "$out/params.yaml" \
    --out "$out/models" --live-dir "$out/live" --summary "$out/train_summary_$variant.json"
python -m latent_reasoning.stages.evaluate --method "$variant" --params "$out/params.yaml" \
    --model "$out/models/$variant" --out "$out/eval_$variant"
