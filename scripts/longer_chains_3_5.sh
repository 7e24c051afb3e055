# The longer_chains_3_5 trial (data, tokenizer, CoT, coconut and no_curriculum on 3-5-step chains): bash scripts/longer_chains_3_5.sh
# Run from the repository root. Its params are reports/experiments/longer_chains_3_5/params.yaml;
# everything it trains goes to $D (default /tmp/longer_chains); the record in that folder
# (train_summary.json, eval_*.json) comes from there. Described in
# reports/experiments/earlier_results.md ("What the trials say") and docs/experiments.md.
set -e
case "${1:-}" in -h|--help) sed -n '1,5p' "$0"; exit 0;; esac
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
