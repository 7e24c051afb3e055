import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from latent_reasoning.coconut import CoconutConfig, inference_prompt
from latent_reasoning.evaluation import accuracy_by, answers_match, evaluate, extract_answer
from latent_reasoning.formats import prompt_text, target_text
from latent_reasoning.generation import generate
from latent_reasoning.generator import GeneratorConfig, SplitSizes, generate_splits
from latent_reasoning.tokenizer import build_tokenizer


@pytest.mark.parametrize("text, expected", [
    ("<<2+3=5>>\n### 5", "5"),
    ("### 1,000", "1000"),
    ("### 3\n### 4", "4"),                # the last ### counts
    ("no marker here", None),
    ("### ", None),                        # empty answer
    ("###-7", "-7"),
    ("### 12 apples", "12 apples"),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("predicted, gold, ok", [
    ("5", "5", True), ("5.0", "5", True), ("1000", "1,000", True), ("-3", "-3", True),
    ("0.5", ".5", True), ("6", "5", False), (None, "5", False), ("12 apples", "12", False),
    ("abc", "abc", True), ("1e3", "1000", True),
])
def test_answers_match(predicted, gold, ok):
    assert answers_match(predicted, gold) is ok


def tiny_model(kind: str, vocab_size: int = 40):
    torch.manual_seed(0)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=128))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
    # large random weights so greedy outputs vary with the context (a fresh model tends to repeat)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model.eval()


def reference_generate(model, prompt, max_new_tokens, eos_id):
    """One row, no cache, the whole prefix recomputed for every new token."""
    ids = list(prompt)
    for _ in range(max_new_tokens):
        token = model(torch.tensor([ids])).logits[0, -1].argmax().item()
        if token == eos_id:
            break
        ids.append(token)
    return ids[len(prompt):]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_batched_generation_equals_one_by_one(kind):
    model = tiny_model(kind)
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, 40, (n,), generator=gen).tolist() for n in (3, 9, 1, 6, 12)]
    batched = generate(model, prompts, max_new_tokens=12, eos_id=1, pad_id=0)
    alone = [generate(model, [p], max_new_tokens=12, eos_id=1, pad_id=0)[0] for p in prompts]
    reference = [reference_generate(model, p, 12, eos_id=1) for p in prompts]
    assert batched == alone == reference
    assert len({tuple(r) for r in batched}) > 1  # the rows really differ


def test_generation_stops_each_row_at_eos():
    model = tiny_model("gpt2")
    prompts = [[5, 6, 7], [8, 9, 30, 31]]
    free = generate(model, prompts, max_new_tokens=10, eos_id=1, pad_id=0)
    # declare a token row 0 produces (not at its start) to be eos: each row must stop
    # right before its own first occurrence of it, and nowhere else
    k = next(k for k in range(1, len(free[0])) if free[0][k] not in free[0][:k])
    eos = free[0][k]
    cut = generate(model, prompts, max_new_tokens=10, eos_id=eos, pad_id=0)
    for row, full in zip(cut, free):
        assert row == (full[: full.index(eos)] if eos in full else full)
    assert cut[0] == free[0][:k]


def test_accuracy_by_groups_in_sorted_order_and_skips_ungrouped():
    preds = [{"correct": c, "steps": k} for c, k in [(True, 3), (False, 2), (True, 2), (True, None), (False, 10)]]
    by = accuracy_by(preds, lambda p: p["steps"])
    assert list(by) == ["2", "3", "10"]  # numeric order, then named as strings
    assert by["2"] == {"accuracy": 0.5, "n": 2} and by["3"] == {"accuracy": 1.0, "n": 1}
    assert sum(v["n"] for v in by.values()) == 4  # the None row is in no group
    assert accuracy_by(preds[:1], lambda p: p["steps"]) is None  # one group: nothing to compare


def test_evaluate_feeds_thoughts_through_thought_fn():
    data = generate_splits(5, GeneratorConfig(), SplitSizes(200, 10, 12))
    tok = build_tokenizer(prompt_text(ex) + target_text(ex, "cot") for ex in data["train"])
    model = tiny_model("gpt2", vocab_size=len(tok))
    cfg = CoconutConfig()
    kwargs = dict(batch_size=5, max_new_tokens=6, n_latents=2,
                  prompt_fn=lambda t, ex: inference_prompt(t, ex, "coconut", cfg.final_stage, cfg))
    examples = data["test_gsm"]
    seen = []

    def recording(h):
        seen.append(h.shape[0])
        return h

    _, fed_back = evaluate(model, tok, examples, **kwargs)
    _, recorded = evaluate(model, tok, examples, thought_fn=recording, **kwargs)
    # a large random thought: an untrained model's greedy output can ignore a small change
    # (zeros gave the same strings on some data), not one this far from its hidden states
    g = torch.Generator().manual_seed(0)
    _, replaced = evaluate(model, tok, examples, **kwargs,
                           thought_fn=lambda h: 30 * torch.randn(h.shape, generator=g))
    assert seen == [5, 5, 5, 5, 2, 2]  # two thoughts per batch of 5, 5, 2 rows
    assert [p["output"] for p in recorded] == [p["output"] for p in fed_back]
    assert [p["output"] for p in replaced] != [p["output"] for p in fed_back]
