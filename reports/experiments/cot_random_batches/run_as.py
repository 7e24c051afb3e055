"""CoT stage with random (not length-bucketed) batches: a trial."""
import sys
import latent_reasoning.stages.train as stage
orig = stage.train
def train_random(*a, **kw):
    kw.pop("length", None)
    return orig(*a, **kw)
stage.train = train_random
sys.argv = ["train", "--method", "cot", "--out", "/tmp/p7/cot_random/model", "--live-dir", "/tmp/p7/cot_random/live"]
stage.main()
