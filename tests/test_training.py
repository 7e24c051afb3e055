import torch

from latent_reasoning.config import TrainConfig
from latent_reasoning.formats import collate, encode_examples
from latent_reasoning.generator import GeneratorConfig, SplitSizes, generate_splits
from latent_reasoning.modeling import build_model
from latent_reasoning.config import ModelConfig
from latent_reasoning.tokenizer import build_tokenizer
from latent_reasoning.formats import prompt_text, target_text
from latent_reasoning.train_loop import batches, lr_at, train


def test_lr_schedule():
    cfg = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == 0.1 and lr_at(9, cfg) == 1.0
    assert abs(lr_at(99, cfg) - 0.1) < 0.01
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_batches_cover_every_example_each_epoch_and_bucket_by_length():
    examples = [[0] * n for n in range(1, 101)]
    stream = batches(examples, 10, seed=0, length=len, window=10)
    epoch = [next(stream) for _ in range(10)]
    assert sorted(len(x) for b in epoch for x in b) == list(range(1, 101))
    spread = sum(max(map(len, b)) - min(map(len, b)) for b in epoch) / 10
    assert spread < 15  # random batches of 10 from 100 lengths would spread ~80


def test_training_lowers_the_loss(tmp_path):
    torch.set_num_threads(1)
    data = generate_splits(0, GeneratorConfig(), SplitSizes(256, 8, 8))
    tok = build_tokenizer(prompt_text(ex) + target_text(ex, "cot") for ex in data["train"])
    encoded = encode_examples(tok, data["train"], "cot")
    model = build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=128), tok)
    fixed = collate(encoded[:64], tok.pad_token_id)

    def held_loss():
        with torch.no_grad():
            return model(**fixed).loss.item()

    before = held_loss()
    cfg = TrainConfig(max_steps=40, batch_size=32, lr=3e-3, warmup_steps=5, eval_every=20, eval_size=8, log_every=5)
    accuracies = []

    def validate(m):
        accuracies.append(0.5)
        return 0.5

    summary = train(model, encoded, cfg, make_batch=lambda s: collate(s, tok.pad_token_id),
                    out_dir=tmp_path / "model", live_dir=tmp_path / "live", validate=validate)
    after = held_loss()
    assert after < 0.6 * before, (before, after)
    assert len(accuracies) == 2 and summary["best_step"] == 20
    assert (tmp_path / "model" / "config.json").exists()
    assert (tmp_path / "live" / "metrics.json").exists()


def test_train_buckets_by_length_only_when_the_config_says_so(tmp_path):
    examples = [[0] * n for n in range(1, 101)]
    model = torch.nn.Linear(1, 1)
    spreads = {}
    for buckets in (True, False):
        seen = []

        def make_batch(batch):
            seen.append([len(x) for x in batch])
            return {"x": torch.ones(len(batch), 1)}

        cfg = TrainConfig(max_steps=10, batch_size=10, warmup_steps=0, log_every=5, length_buckets=buckets)
        train(model, examples, cfg, make_batch=make_batch, loss_fn=lambda m, b: m(b["x"]).pow(2).mean(),
              out_dir=tmp_path / "model", live_dir=tmp_path / f"live_{buckets}", save=lambda m, d: None, length=len)
        assert sorted(n for b in seen for n in b) == list(range(1, 101))  # one epoch, every example once
        spreads[buckets] = sum(max(b) - min(b) for b in seen) / len(seen)
    assert spreads[True] < 15 < 50 < spreads[False], spreads
