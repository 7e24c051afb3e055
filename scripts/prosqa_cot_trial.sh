#!/bin/bash
# Trial prosqa_cot: does CoT-SFT learn the graph task at prosqa/params.yaml's sizes, and how
# fast does a step run (for sizing the full pipeline)? A fresh clone, its own DVC cache.
# Record: reports/experiments/prosqa_cot/.
rm -rf /work/prosqa_trial && git clone -q /work/main /work/prosqa_trial && cd /work/prosqa_trial
export PYTHONPATH=/work/prosqa_trial/src HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
echo "START $(date -u +%FT%TZ) $(git log --oneline | head -1 | cut -c1-7)"
dvc repro prosqa/dvc.yaml:evaluate@cot 2>&1 | while IFS= read -r line; do echo "$(date -u +%T) $line"; done
echo "END $(date -u +%FT%TZ)"
