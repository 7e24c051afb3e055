#!/bin/bash
# One Coconut-, ATP- or RL-stage trial (params.yaml with one edit, one variant or RL run trained and evaluated): bash scripts/trial.sh OUT_DIR VARIANT 'EDIT'
# The committed params.yaml with one edit and one thread (as each
# variant trains in the pipeline), a single variant trained from the committed CoT model,
# then evaluated on every test set. Run from the repository root after `dvc repro` (it
# needs data/prepared, models/tokenizer and models/cot).
#   usage: bash scripts/trial.sh OUT_DIR VARIANT 'python statement editing the params dict p'
#   e.g.:  bash scripts/trial.sh reports/experiments/my_trial coconut 'p["coconut"]["c_thought"] = 3'
#   (-h or --help prints this header)
# Writes the trial's record: OUT_DIR/params.yaml, OUT_DIR/train_summary_VARIANT.json (the
# per-stage validation history) and OUT_DIR/eval_VARIANT.json (the test metrics); the model,
# its DVCLive logs and the predictions go to OUT_DIR/.work/VARIANT (git-ignored). Several
# variants may share one OUT_DIR and run at once. (Until 2026-11-23 it wrote
# train_summary.json and eval/metrics.json next to the model, and the records below were
# copied into this layout by hand.) The trials in these folders (D is the folder under
# reports/experiments/; length_buckets was then the default):
#   final_stage_schedule/min_lr_0:      trial.sh D coconut 'B; p["train"]["min_lr_ratio"] = 0.0'
#   final_stage_schedule/curriculum_50: trial.sh D coconut 'B; p["coconut"]["steps_per_stage"] = 50; p["coconut"]["final_stage_steps"] = 1350'
#   seeds/seed_S:                       trial.sh D V 'B; p["base"]["seed"] = S'     (S: 1, 2; V: coconut, no_curriculum)
#   random_batches/seed_S:              trial.sh D V 'p["base"]["seed"] = S'        (S: 0 in the folder itself, 1, 2)
# with B standing for p["coconut"]["length_buckets"] = True; all of those from the CoT model
# trained on bucketed batches (before 6dc4dbc). From the random-batch CoT model (e8a32c1):
#   random_cot_seeds/seed_S:            trial.sh D V 'p["base"]["seed"] = S'        (S: 1, 2; later 3, 4)
#   final_stage_2000:                   trial.sh D V 'p["coconut"]["final_stage_steps"] = 2000'
# (those four ran at once), then, two at once:
#   final_stage_1500:                   trial.sh D V 'p["coconut"]["final_stage_steps"] = 1500'
#   final_stage_1500/seed_S:            trial.sh D V 'p["coconut"]["final_stage_steps"] = 1500; p["base"]["seed"] = S'
#                                       (V: coconut; no_curriculum later)
# and, four at a time (seeds 3 and 4 beside curriculum_250 seeds 0 and 1; then its seed 2
# beside no_curriculum of final_stage_1500/seed_S, eight at once for a while):
#   curriculum_250[/seed_S]:            trial.sh D V 'p["coconut"]["steps_per_stage"] = 250; p["base"]["seed"] = S'
# then three at once (S: 0 in the folder itself, 1, 2), then two (S: 3, 4):
#   no_curriculum_1050[/seed_S]:        trial.sh D no_curriculum 'p["coconut"]["final_stage_steps"] = 600; p["base"]["seed"] = S'
# (their train_summary_*.json are the models' per-stage histories). Until 2026-11-23
# no_curriculum trained for the whole budget, steps_per_stage*max_latent_stage +
# final_stage_steps, all at the final stage; since then for final_stage_steps only (as the
# reference's `resume` does). To rerun an earlier no_curriculum trial, set
# final_stage_steps to the total its params give. Everything above ran on an Intel machine
# with AMX; from 2026-11-23 on an AMD EPYC (docs/experiments.md), from its own CoT model, six at once:
#   default_seeds/seed_S:               trial.sh D V 'p["base"]["seed"] = S'
#                                       (S: 1, 2; V: coconut, no_curriculum, no_thought;
#                                        then S: 3, 4 for coconut and no_thought beside
#                                        S: 1, 2 for pause_as_thought; then, four at once,
#                                        S: 3, 4 for no_curriculum and pause_as_thought)
# then six at once (beside scripts/read_thoughts.py for the first 20 minutes):
#   pipeline_final_stage_1500/seed_S:   trial.sh D V 'p["coconut"]["final_stage_steps"] = 1500; p["base"]["seed"] = S'
#                                       (S: 1, 2, 3; V: coconut, no_thought)
# then three at once, beside the pipeline's `dvc repro` of the coconut stage:
#   soft_token_feedback/seed_S:         trial.sh D coconut 'p["coconut"]["thought_feedback"] = "soft_token"; p["base"]["seed"] = S'
#                                       (S: 0, 1, 2)
# then three at once:
#   c_thought_3/seed_S:                 trial.sh D V 'p["coconut"]["c_thought"] = 3; p["base"]["seed"] = S'
#                                       (V: coconut, S: 0, 1, 2; then four at once: coconut S: 3, 4
#                                        and pause_as_thought S: 0, 1)
# then three at once (from a copy of the code at b1387a5, the first 40 minutes beside the
# pipeline's `dvc repro` of the coconut stage; then three at once, alone):
#   pipeline_final_stage_2000/seed_S:   trial.sh D V 'p["coconut"]["final_stage_steps"] = 2000; p["base"]["seed"] = S'
#                                       (S 0 in the folder itself; V: coconut, S: 0, 1, then 2, 3;
#                                        no_thought, S: 0, then 1; then four at once:
#                                        no_thought S: 2, 3 and no_curriculum S: 1, 2)
# On the AVX2-only AMD EPYC (2026-12-01), RL runs from the pipeline's seed-0 models, two at once:
#   rl_seeds/seed_S:                    trial.sh D V 'p["base"]["seed"] = S'
#                                       (S: 1, 2; V: atp_rl, grpo_coconut)
# On the same machine (2026-12-02), from the pipeline's seed-0 coconut, two at once:
#   latent_rl_seeds/seed_S:             trial.sh D latent_rl 'p["base"]["seed"] = S'     (S: 1, 2)
#   latent_rl_critic/critic_lr_5e-4:    trial.sh D latent_rl 'p["rl"]["latent_rl"]["critic_lr"] = 5.0e-4'
#   latent_rl_critic/chain_grad:        trial.sh D latent_rl 'p["rl"]["latent_rl"]["chain_grad"] = True'
# then four at once, from the pipeline's seed-0 CoT-SFT model:
#   atp_vs_coconut_seeds/seed_S:        trial.sh D V 'p["base"]["seed"] = S'     (S: 1, 2; V: coconut, atp_vae)
# On the step-named data (2026-12-02), two at once (beside a CI run for its first 10 minutes):
#   atp_named_steps/kl_1e-4:            trial.sh D atp_vae 'p["atp"]["kl_weight"] = 1e-4'
#   atp_named_steps:                    trial.sh D atp_no_vae 'p["atp"]["variants"] = ["atp_no_vae"]'
# On the bare-formula data again (2026-12-02), from the pipeline's seed-0 coconut, two at once:
#   latent_rl_seeds_bare/seed_S:        trial.sh D latent_rl 'p["base"]["seed"] = S'     (S: 1, 2)
# then, from the pipeline's seed-0 atp_vae, two at once:
#   atp_rl_seeds_bare/seed_S:           trial.sh D atp_rl 'p["base"]["seed"] = S'        (S: 1, 2)
# On the final data (data_design try 8), 2 cores of an AMD EPYC with AVX-512, from the
# pipeline's seed-0 CoT-SFT model, four at once:
#   atp_vs_coconut_seeds_final_data/seed_S: trial.sh D V 'p["base"]["seed"] = S'     (S: 1, 2; V: coconut, atp_vae)
# then, from the pipeline's seed-0 atp_vae, two at once:
#   atp_rl_seeds_final_data/seed_S:     trial.sh D atp_rl 'p["base"]["seed"] = S'        (S: 1, 2)
# On the same kind of machine (2026-12-03), from a `dvc repro train@cot` of the committed code, four at once:
#   atp_ablations_final_data[/seed_S]:  trial.sh D atp_no_vae 'p["atp"]["variants"] = ["atp_no_vae"]; p["base"]["seed"] = S'   (S: 0 in the folder itself, 1, 2)
#   atp_ablations_final_data:           trial.sh D atp_no_stop 'p["atp"]["variants"] = ["atp_no_stop"]'
# then, from the seed-0 atp_vae of a `dvc repro` rerun of the committed code, three at once:
#   atp_rl_steps_120/seed_S:            trial.sh D atp_rl 'p["rl"]["steps"] = 120; p["rl"]["eval_every"] = 40; p["base"]["seed"] = S'   (S: 0, 1, 2)
# then, from the pipeline's seed-0 CoT-SFT, three at once (atp_vae), then the same for coconut:
#   atp_final_stage_2000/seed_S:        trial.sh D V 'p["coconut"]["final_stage_steps"] = 2000; p["base"]["seed"] = S'   (S: 0, 1, 2; V: atp_vae, coconut)
set -euo pipefail
# The body is one block, so bash reads all of it before running any: bash reads a script
# as it goes, and an edit to this file while a trial ran once made it rerun the training
# (random_cot_seeds/seed_4 and curriculum_250/seed_1 trained twice; the two runs' validation
# histories are identical, and the evaluate command below was then run by hand).
{
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0;; esac
if [[ $# -ne 3 ]]; then sed -n '7p' "$0"; exit 2; fi
out=$1; variant=$2; edit=$3
work="$out/.work/$variant"
mkdir -p "$work"
python - "$out" "$edit" <<'PY'
import os, sys, tempfile, yaml
out, edit = sys.argv[1], sys.argv[2]
p = yaml.safe_load(open("params.yaml"))
p["base"]["threads"] = 1
# its own resume folder: runs of one name at once (two seeds, or a trial beside the pipeline)
# would otherwise share .resume/<run>/ and discard each other's checkpoints
p["base"]["resume_dir"] = os.path.join(out, ".work", "resume")
exec(edit)
# written whole, then renamed: a second variant started in the same folder may be reading it
fd, tmp = tempfile.mkstemp(dir=out, suffix=".yaml")
with os.fdopen(fd, "w") as f:
    yaml.safe_dump(p, f, sort_keys=False)
os.replace(tmp, f"{out}/params.yaml")
PY
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
stage=coconut; flag=--variant; summary="$work/models/$variant/train_summary.json"
[[ $variant == atp_* ]] && stage=atp  # an ATP-Latent variant trains in the atp stage
# an RL run (rl.RUNS) trains in the rl stage, from the committed model it starts from
if [[ $variant == atp_rl* || $variant == grpo_* || $variant == latent_rl ]]; then
    stage=rl; flag=--run; summary="$work/summary.json"
fi
python -m latent_reasoning.stages.$stage $flag "$variant" --params "$out/params.yaml" \
    --out "$work/models" --live-dir "$work/live" --summary "$work/summary.json"
python -m latent_reasoning.stages.evaluate --method "$variant" --params "$out/params.yaml" \
    --model "$work/models/$variant" --out "$work/eval"
cp "$summary" "$out/train_summary_$variant.json"
cp "$work/eval/metrics.json" "$out/eval_$variant.json"
exit
}
