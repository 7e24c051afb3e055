"""The cot_random_batches trial, CoT stage with random (not length-bucketed) batches: python scripts/cot_random_batches.py

Run from the repository root after `dvc repro` (it needs data/prepared and
models/tokenizer). It trains the `train` stage's CoT model with the stage's `length`
function dropped, so batches are drawn at random; the model and its DVCLive logs go to
/tmp/p7/cot_random/ (evaluate it with `python -m latent_reasoning.stages.evaluate --method
cot --model /tmp/p7/cot_random/model --out D`). The trial's record (train_summary.json,
eval_cot.json) is in reports/experiments/cot_random_batches/. It predates
`train.length_buckets`; `train.length_buckets: false` now takes the same code path (see
that folder's README.md).
"""
import sys
if sys.argv[1:2] in (["-h"], ["--help"]):
    print(__doc__)
    raise SystemExit(0)
import latent_reasoning.stages.train as stage
orig = stage.train
def train_random(*a, **kw):
    kw.pop("length", None)
    return orig(*a, **kw)
stage.train = train_random
sys.argv = ["train", "--method", "cot", "--out", "/tmp/p7/cot_random/model", "--live-dir", "/tmp/p7/cot_random/live"]
stage.main()
