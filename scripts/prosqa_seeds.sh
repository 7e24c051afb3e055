#!/bin/bash
# Seeds for the graph task: CoT-SFT trained with base.seed S, then Coconut from that seed's
# CoT-SFT model with the same seed (the whole chain, as the pipeline trains it), both evaluated
# on test_prosqa. Run from prosqa/ of a clone where `dvc repro prosqa/dvc.yaml` has run (it
# needs data/prepared and models/tokenizer), with PYTHONPATH at that clone's src/:
#   usage: bash ../scripts/prosqa_seeds.sh OUT_DIR SEED
# prosqa/params.yaml with base.seed S and one thread (two seeds run at once on two cores).
# Writes OUT_DIR/params.yaml, OUT_DIR/eval_cot.json, OUT_DIR/eval_coconut.json and the two
# training summaries; models, logs and predictions go to OUT_DIR/.work/ (git-ignored).
set -euo pipefail
# one block: bash reads all of it before running any (an edit during a run cannot change it)
{
if [[ $# -ne 2 ]]; then sed -n '5p' "$0"; exit 2; fi
out=$1; seed=$2; work="$out/.work"
mkdir -p "$work"
python - "$out" "$seed" <<'PY'
import os, sys, yaml
out, seed = sys.argv[1], int(sys.argv[2])
p = yaml.safe_load(open("params.yaml"))
p["base"]["seed"], p["base"]["threads"] = seed, 1
p["base"]["resume_dir"] = os.path.join(out, ".work", "resume")  # not the pipeline's .resume/
with open(f"{out}/params.yaml", "w") as f:
    yaml.safe_dump(p, f, sort_keys=False)
PY
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
P="$out/params.yaml"
python -m latent_reasoning.stages.train --method cot --params "$P" --out "$work/cot" --live-dir "$work/live/cot"
python -m latent_reasoning.stages.evaluate --method cot --params "$P" --model "$work/cot" --out "$work/eval/cot"
python -m latent_reasoning.stages.coconut --variant coconut --params "$P" --cot "$work/cot" --out "$work/coconut" \
    --live-dir "$work/live" --summary "$work/coconut_summary.json"
python -m latent_reasoning.stages.evaluate --method coconut --params "$P" --model "$work/coconut/coconut" \
    --out "$work/eval/coconut"
cp "$work/cot/train_summary.json" "$out/train_summary_cot.json"
cp "$work/coconut_summary.json" "$out/train_summary_coconut.json"
cp "$work/eval/cot/metrics.json" "$out/eval_cot.json"
cp "$work/eval/coconut/metrics.json" "$out/eval_coconut.json"
exit
}
