# The longer-chain trial (README, "What the trials say"), run from the repo root:
#   bash reports/experiments/longer_chains_3_5/run.sh
set -e
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
D=${D:-/tmp/longer_chains}; P=reports/experiments/longer_chains_3_5/params.yaml
date
python -m latent_reasoning.stages.prepare --params $P --out $D/data
python -m latent_reasoning.stages.tokenizer --params $P --data $D/data --out $D/tokenizer
python -m latent_reasoning.stages.train --method cot --params $P --data $D/data --tokenizer $D/tokenizer --out $D/cot --live-dir $D/live/cot
date
python -m latent_reasoning.stages.coconut --params $P --data $D/data --cot $D/cot --tokenizer $D/tokenizer --out $D/models --live-dir $D/live --summary $D/summary.json
date
for m in coconut no_curriculum; do python -m latent_reasoning.stages.evaluate --method $m --params $P --data $D/data --model $D/models/$m --out $D/eval/$m; done
python -m latent_reasoning.stages.evaluate --method cot --params $P --data $D/data --model $D/cot --out $D/eval/cot
date
