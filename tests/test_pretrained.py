"""The pretrained-model path (model.name_or_path) through the same stages, on tiny
Llama and Qwen2 models saved to a temp dir with a tokenizer of their own."""

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from latent_reasoning import coconut
from latent_reasoning.modeling import load_checkpoint, load_pretrained
from latent_reasoning.tokenizer import LATENT_TOKENS, load_tokenizer

from helpers import run_stage, write_params


def own_tokenizer():
    """A stand-in for a pretrained model's tokenizer: byte-free word level, an eos and a bos,
    no pad and none of our special tokens (as GPT-2 / Llama ship)."""
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")  # one token per character
    from tokenizers import decoders
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def save_tiny(kind, path):
    tok = own_tokenizer()
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**common))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return len(tok)


@pytest.mark.parametrize("kind, feedback", [("llama", "hidden"), ("qwen2", "soft_token")])
def test_pretrained_model_through_the_stages(kind, feedback, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base_vocab = save_tiny(kind, tmp_path / "base")
    params = write_params(tmp_path / "params.yaml", model={"name_or_path": str(tmp_path / "base")},
                          evaluate={"batch_size": 16, "max_new_tokens": 8},
                          coconut={"thought_feedback": feedback})
    run_stage(monkeypatch, "prepare", "--params", params)
    run_stage(monkeypatch, "tokenizer", "--params", params)
    tok = load_tokenizer("models/tokenizer")
    assert len(tok) == base_vocab + len(LATENT_TOKENS) + 1  # + pad
    run_stage(monkeypatch, "train", "--params", params, "--method", "cot")
    model = load_checkpoint("models/cot")
    assert type(model).__name__.lower().startswith(kind)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    run_stage(monkeypatch, "evaluate", "--params", params, "--method", "cot")
    metrics = json.loads((tmp_path / "reports/eval/cot/metrics.json").read_text())
    assert set(metrics) == {"gsm", "gsm_hard", "svamp", "multiarith", "longer"}
    assert all(m["n"] == 16 and 0 <= m["accuracy"] <= 1 for m in metrics.values())
    # gsm has 2-4-step problems: accuracy by step count covers every example once
    by_steps = metrics["gsm"]["by_steps"]
    assert sum(v["n"] for v in by_steps.values()) == 16 and set(by_steps) <= {"2", "3", "4"}
    # Coconut from that CoT model, through the shared latent core. Count the thoughts that
    # pass through coconut.thought_fn's hook, per stage (none with "hidden": h is fed back as is)
    hook_calls = []  # one counter per stage run
    real_thought_fn = coconut.thought_fn

    def counting_thought_fn(model, cfg):
        fn, counter = real_thought_fn(model, cfg), len(hook_calls) - 1
        if fn is None:
            return None

        def counted(h):
            hook_calls[counter] += 1
            return fn(h)
        return counted

    monkeypatch.setattr(coconut, "thought_fn", counting_thought_fn)
    hook_calls.append(0)
    run_stage(monkeypatch, "coconut", "--params", params, "--variant", "coconut")
    hook_calls.append(0)
    run_stage(monkeypatch, "evaluate", "--params", params, "--method", "coconut")
    metrics = json.loads((tmp_path / "reports/eval/coconut/metrics.json").read_text())
    # tokens = 6 thoughts + at least nothing generated
    assert all(m["n"] == 16 and m["tokens"] >= 6 for m in metrics.values())
    # training and evaluation both feed the thoughts back the configured way
    assert (min(hook_calls) > 0) == (feedback == "soft_token"), hook_calls


def test_hub_id_without_network_is_a_clear_error():
    with pytest.raises(OSError, match="local directory"):
        load_pretrained("some-org/not-a-local-model")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run its training stage"):
        load_checkpoint(tmp_path / "models" / "cot")
