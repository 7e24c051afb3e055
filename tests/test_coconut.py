import random

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from latent_reasoning import coconut
from latent_reasoning.coconut import CoconutConfig
from latent_reasoning.formats import IGNORE, prompt_text, target_text
from latent_reasoning.generator import GeneratorConfig, SplitSizes, generate_splits
from latent_reasoning.tokenizer import BOT, EOT, LATENT, PAUSE, build_tokenizer

CFG = CoconutConfig(c_thought=2, max_latent_stage=3)


@pytest.fixture(scope="module")
def setup():
    data = generate_splits(1, GeneratorConfig(), SplitSizes(300, 10, 10))
    tok = build_tokenizer(prompt_text(ex) + target_text(ex, "cot") for ex in data["train"])
    four = next(ex for ex in data["train"] if len(ex.steps) == 4)
    return tok, four, data


def decode(tok, ids):
    return tok.decode(ids)


def test_stage_k_replaces_the_first_k_steps_with_k_c_thoughts(setup):
    tok, ex, _ = setup
    for stage in (1, 2, 3):
        prefix, n, suffix, labels = coconut.sequence_parts(tok, ex, "coconut", stage, CFG)
        assert decode(tok, prefix) == prompt_text(ex) + BOT
        assert n == 2 * stage
        rest = "".join(s + "\n" for s in ex.steps[stage:]) + "### " + ex.answer
        assert decode(tok, suffix) == EOT + rest + tok.eos_token
        assert labels[0] == IGNORE and labels[1:] == suffix[1:]  # no loss on <eot>
    # final stage: every step gone, thoughts stay at the maximum
    prefix, n, suffix, _ = coconut.sequence_parts(tok, ex, "coconut", CFG.final_stage, CFG)
    assert n == CFG.max_thoughts and decode(tok, suffix) == EOT + "### " + ex.answer + tok.eos_token


def test_short_problems_and_padding_to_max(setup):
    tok, _, data = setup
    two = next(ex for ex in data["train"] if len(ex.steps) == 2)
    _, n, suffix, _ = coconut.sequence_parts(tok, two, "coconut", 3, CFG)
    assert n == 4 and decode(tok, suffix).startswith(EOT + "###")  # only 2 steps to replace
    padded = CoconutConfig(pad_latent_to_max=True)
    assert coconut.sequence_parts(tok, two, "coconut", 1, padded)[1] == padded.max_thoughts


def test_ablation_sequences(setup):
    tok, ex, _ = setup
    # no_thought: the steps go, nothing replaces them
    prefix, n, suffix, _ = coconut.sequence_parts(tok, ex, "no_thought", 2, CFG)
    assert n == 0 and decode(tok, suffix).startswith(EOT + ex.steps[2])
    # pause_as_thought: as many <pause> input tokens as coconut has thoughts, without loss
    prefix, n, suffix, labels = coconut.sequence_parts(tok, ex, "pause_as_thought", 2, CFG)
    assert n == 0 and decode(tok, suffix).startswith(PAUSE * 4 + EOT + ex.steps[2])
    assert labels[:5] == [IGNORE] * 5 and labels[5:] == suffix[5:]
    # pause_token: question-answer training with max_thoughts pauses
    _, n, suffix, _ = coconut.sequence_parts(tok, ex, "pause_token", CFG.final_stage, CFG)
    assert n == 0 and decode(tok, suffix) == PAUSE * 6 + EOT + "### " + ex.answer + tok.eos_token


def test_inference_prompts(setup):
    tok, ex, _ = setup
    final = CFG.final_stage
    assert decode(tok, coconut.inference_prompt(tok, ex, "coconut", final, CFG)).endswith(BOT)
    assert coconut.inference_latents("coconut", final, CFG) == 6
    assert coconut.inference_latents("coconut", 2, CFG) == 4
    assert coconut.inference_latents("pause_as_thought", final, CFG) is None
    assert decode(tok, coconut.inference_prompt(tok, ex, "pause_as_thought", final, CFG)).endswith(
        BOT + PAUSE * 6 + EOT)
    assert decode(tok, coconut.inference_prompt(tok, ex, "no_thought", final, CFG)).endswith(BOT + EOT)


def test_inference_kwargs_run_each_variant_as_trained(setup):
    """The one place evaluation, validation and the analyses get how a variant is run."""
    tok, ex, _ = setup
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64))
    for variant in coconut.VARIANTS:
        for stage in (2, CFG.final_stage):
            run = coconut.inference_kwargs(model, variant, stage, CFG)
            assert run["prompt_fn"](tok, ex) == coconut.inference_prompt(tok, ex, variant, stage, CFG)
            assert run["n_latents"] == coconut.inference_latents(variant, stage, CFG)
            assert run["thought_fn"] is None  # hidden: the state itself
    soft = coconut.inference_kwargs(model, "coconut", CFG.final_stage, CoconutConfig(thought_feedback="soft_token"))
    h = torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(soft["thought_fn"](h), torch.softmax(model.lm_head(h), -1) @ model.get_input_embeddings().weight)


def test_schedules():
    cfg = CoconutConfig(max_latent_stage=3, steps_per_stage=10, final_stage_steps=30)
    assert coconut.stages("coconut", cfg) == [(1, 10), (2, 10), (3, 10), (4, 30)]
    # the final stage only, for as many steps as Coconut's final stage (the reference's `resume`)
    assert coconut.stages("no_curriculum", cfg) == [(4, 30)]
    assert coconut.stages("pause_token", cfg) == [(4, 60)]  # Coconut's whole budget, as No-CoT trains


def test_make_batch_aligns_bot_and_mixes_stages(setup):
    tok, _, data = setup
    rows = data["train"][:16]
    batch = coconut.make_batch(tok, rows, "coconut", 3, CFG, random.Random(0))
    bot = tok.convert_tokens_to_ids(BOT)
    assert (batch.input_ids[:, batch.bot_column] == bot).all()
    latent = tok.convert_tokens_to_ids(LATENT)
    assert ((batch.input_ids == latent).sum(1) == batch.n_latents).all()
    mixed = coconut.make_batch(tok, rows, "coconut", 3, CoconutConfig(uniform_prob=1.0), random.Random(0))
    assert len(set(mixed.n_latents.tolist())) > 1  # some rows drawn at earlier stages


def test_config_validation():
    with pytest.raises(ValueError, match="uniform_prob"):
        CoconutConfig(uniform_prob=-0.5)
    with pytest.raises(ValueError, match="bogus"):
        CoconutConfig(variants=("coconut", "bogus"))
    with pytest.raises(ValueError, match="jobs"):
        CoconutConfig(jobs=0)
    with pytest.raises(ValueError, match="listed twice"):
        CoconutConfig(variants=("coconut", "no_thought", "coconut"))


def test_soft_token_feedback_mixes_input_embeddings_by_the_heads_distribution():
    with pytest.raises(ValueError, match="thought_feedback"):
        CoconutConfig(thought_feedback="bogus")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    assert coconut.thought_fn(model, CoconutConfig()) is None  # the paper: h fed back as is
    fn = coconut.thought_fn(model, CoconutConfig(thought_feedback="soft_token"))
    h = torch.randn(3, 16, requires_grad=True)
    embeddings = model.get_input_embeddings().weight
    mixed = fn(h)
    torch.testing.assert_close(mixed, torch.softmax(model.lm_head(h), -1) @ embeddings)
    # h = 0 gives every token the logit 0 (GPT-2's head has no bias): the mean embedding
    with torch.no_grad():
        torch.testing.assert_close(fn(torch.zeros(1, 16))[0], embeddings.mean(0))
    mixed.sum().backward()  # gradients reach the hidden state through the mixture
    assert h.grad is not None and h.grad.abs().sum() > 0


@pytest.mark.parametrize("texts, spelling", [
    (["Q?\n<<1+2=3>>\n### 3"], "<<"),                     # bare formulas: "<<" after a newline
    (["Q?\nAna <<1+2=3>> Bo <<3+1=4>>\n### 4"], " <<"),    # step-named: "<<" only ever after a word
])
def test_latent_tokens_start_from_the_step_marker_never_unk(texts, spelling):
    tok = build_tokenizer(texts)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=16, n_head=2, n_positions=32))
    coconut.init_latent_tokens(model, tok)
    emb = model.get_input_embeddings().weight
    marker = tok.convert_tokens_to_ids(spelling)
    assert marker != tok.unk_token_id
    for special in (BOT, EOT, LATENT, PAUSE):
        assert torch.equal(emb[tok.convert_tokens_to_ids(special)], emb[marker])
    assert not torch.equal(emb[marker], emb[tok.unk_token_id])


def test_latent_tokens_refuse_a_tokenizer_without_the_marker():
    tok = build_tokenizer(["Q?\n1+2=3\n### 3"])
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=16, n_head=2, n_positions=32))
    with pytest.raises(ValueError, match="coconut.init_token"):
        coconut.init_latent_tokens(model, tok)
    coconut.init_latent_tokens(model, tok, marker="Q")  # another marker the steps start with
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb[tok.convert_tokens_to_ids(LATENT)], emb[tok.convert_tokens_to_ids("Q")])
