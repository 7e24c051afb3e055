#!/bin/bash
# Does the old code (a worktree at $OLD; first used with 41adcb4, the full rerun's) and the
# working tree compute the same? Short runs of every
# training stage from the rerun's data, tokenizer and CoT model, and evaluations of the
# rerun's final models; outputs compared byte for byte (weights) by compare.py.
# Record: reports/experiments/code_identity/ (its output in compare_output.txt).
#   R=/work/main OLD=/work/old T=/work/trials/identity2 bash scripts/code_identity.sh
#   (R: a clone holding the full run's data and models)
set -e
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
R=${R:-/work/rerun}
T=${T:-/work/trials/identity}
OLD=${OLD:-/work/old}
NEW=$(cd "$SCRIPTS/.." && pwd)
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1 OMP_NUM_THREADS=1
small() {  # $1 source params.yaml, $2 out
python - "$1" "$2" <<'PY'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
p["base"]["threads"] = 1
p["train"].update(max_steps=12, eval_every=6, eval_size=64)
p["train"]["overrides"] = {"cot": {}, "nocot": {"max_steps": 12}}
p["coconut"].update(steps_per_stage=2, final_stage_steps=4, eval_every=2, jobs=1, variants=["coconut"])
p["atp"].update(variants=["atp_vae"])
p["rl"].update(steps=2, runs=["atp_rl", "latent_rl", "grpo_cot"])
p["rl"]["latent_rl"].update(value_questions=200, heldout_questions=100, value_epochs=5, pos_weight=1.0)
p["evaluate"]["limit"] = 100
yaml.safe_dump(p, open(sys.argv[2], "w"), sort_keys=False)
PY
}
side() {  # $1 name, $2 src dir, $3 params
  local D=$T/$1; rm -rf $D; mkdir -p $D; cd $D
  small $3 params.yaml
  export PYTHONPATH=$2
  python -m latent_reasoning.stages.prepare --out prepared > log.txt 2>&1
  python -m latent_reasoning.stages.train --method cot --data $R/data/prepared --tokenizer $R/models/tokenizer >> log.txt 2>&1
  python -m latent_reasoning.stages.coconut --data $R/data/prepared --tokenizer $R/models/tokenizer --cot $R/models/cot >> log.txt 2>&1
  python -m latent_reasoning.stages.atp --data $R/data/prepared --tokenizer $R/models/tokenizer --cot $R/models/cot >> log.txt 2>&1
  # RL from this side's short coconut / atp_vae and the rerun's CoT
  rm -rf start2 && mkdir -p start2/models && ln -s $D/models/coconut start2/models/coconut && ln -s $D/models/atp start2/models/atp && ln -s $R/models/cot start2/models/cot
  python -m latent_reasoning.stages.rl --data $R/data/prepared --start-root start2 >> log.txt 2>&1
  for m in atp_vae atp_rl coconut cot; do
    python -m latent_reasoning.stages.evaluate --method $m --data $R/data/prepared --model $R/$(python -c "
from latent_reasoning.inference import default_model_dir; print(default_model_dir('$m'))") --out eval/$m >> log.txt 2>&1
  done
  echo "$1 done"
}
side old $OLD/src $OLD/params.yaml &
side new $NEW/src $NEW/params.yaml &
wait
python $SCRIPTS/code_identity_compare.py $T
