"""ATP-Latent imitation: the KL term, stop decisions, decoder targets, the heads switched
off against Coconut, batched generation with stop decisions, params."""

import dataclasses
import random

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from helpers import write_params
from latent_reasoning import atp, coconut
from latent_reasoning.coconut import CoconutConfig
from latent_reasoning.config import ConfigError, load_params
from latent_reasoning.generation import generate
from latent_reasoning.latent import latent_forward, layout
from latent_reasoning.modeling import use_single_query_sdpa
from latent_reasoning.schema import Example
from latent_reasoning.tokenizer import BOT, EOT, LATENT, build_tokenizer

CFG = CoconutConfig(c_thought=2, max_latent_stage=3)
EXAMPLES = [
    Example("Ava has 12 apples. Ben has 5 more than Ava. How many apples does Ben have?", ("<<12+5=17>>",), "17"),
    Example("Cal has 3 pens. Dan has 2 times as many as Cal. Eve has 4 more than Dan. How many pens does Eve have?",
            ("<<3*2=6>>", "<<6+4=10>>"), "10"),
    Example("Fay has 20 eggs. Gus has 2 fewer than Fay. Hal has half as many as Gus. Ivy has 3 more than Hal. "
            "Jon has 1 fewer than Ivy. How many eggs does Jon have?",
            ("<<20-2=18>>", "<<18/2=9>>", "<<9+3=12>>", "<<12-1=11>>"), "11"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([ex.question for ex in EXAMPLES] + ["".join(ex.steps) + " ### " + ex.answer for ex in EXAMPLES])


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu",
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return use_single_query_sdpa(GPT2LMHeadModel(config)).eval()


def test_kl_matches_the_closed_form():
    mu, log_var = torch.randn(4, 8), torch.randn(4, 8)
    want = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * log_var).exp()),
                                             torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(atp.kl_to_standard_normal(mu, log_var), want, atol=1e-6)
    assert atp.kl_to_standard_normal(torch.zeros(3), torch.zeros(3)).abs().max() == 0  # N(0, I) itself


def test_decoder_targets_are_each_step_then_eos_only_past_the_last(tokenizer):
    final = CFG.final_stage
    assert atp.group_texts(EXAMPLES[1], final, CFG, 3) == ["<<3*2=6>>\n", "<<6+4=10>>\n", ""]
    # more steps than groups: the last group takes the rest, as the reference does
    assert atp.group_texts(EXAMPLES[2], final, CFG, 3) == ["<<20-2=18>>\n", "<<18/2=9>>\n", "<<9+3=12>>\n<<12-1=11>>\n"]
    # at curriculum stage 1 only the first step is a group
    assert atp.group_texts(EXAMPLES[2], 1, CFG, 1) == ["<<20-2=18>>\n"]

    batch = atp.make_batch(tokenizer, EXAMPLES, "atp_vae", final, CFG)
    eos = tokenizer.eos_token_id
    labels = batch.decoder_labels
    for i, ex in enumerate(EXAMPLES):
        used = min(len(ex.steps), CFG.max_latent_stage)
        for g in range(batch.groups):
            target = [t for t in labels[i, g].tolist() if t != -100]
            if g >= used:
                assert target == [eos], (i, g)  # past the last step: eos alone
            else:
                assert target[-1] == eos and len(target) > 1
    # stop labels: 1 exactly on the groups past the row's steps
    assert batch.stop_labels.tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    assert batch.latent.n_latents.tolist() == [2, 4, 6] and batch.latent.n_slots == 6


def test_uniform_prob_mixes_earlier_stages_into_a_batch(tokenizer):
    # coconut.uniform_prob applies to ATP too: a row drawn at an earlier stage k thinks k
    # groups, writes its later steps in language, and its groups past k carry the stop label
    cfg = CoconutConfig(c_thought=2, max_latent_stage=3, uniform_prob=1.0)
    rows = EXAMPLES * 8
    batch = atp.make_batch(tokenizer, rows, "atp_vae", 3, cfg, random.Random(0))
    counts = batch.latent.n_latents.tolist()
    assert len({n for ex, n in zip(rows, counts) if len(ex.steps) == 4}) > 1  # several stages drawn
    for ex, n, stop in zip(rows, counts, batch.stop_labels.tolist()):
        k = n // 2  # the row's groups: its drawn stage, capped by its steps
        assert 1 <= k <= min(3, len(ex.steps)) and stop == [int(g >= k) for g in range(3)]
    plain = atp.make_batch(tokenizer, rows, "atp_vae", 3, CFG, random.Random(0))
    assert plain.latent.n_latents.tolist() == [2 * min(3, len(ex.steps)) for ex in rows]


def test_stopped_slots_are_invisible(tokenizer):
    """What sits in a slot past a row's thoughts changes nothing: not the loss, not the
    answer's logits (training), not the tokens (generation)."""
    model = tiny_model(tokenizer)
    batch = atp.make_batch(tokenizer, EXAMPLES[:1], "atp_vae", CFG.final_stage, CFG)  # 2 thoughts of 6 slots
    calls = []

    def hook(noise):
        def fn(h):
            calls.append(1)
            k = len(calls) - 1
            return h + (noise * torch.randn_like(h) if k % 6 >= 2 else 0)  # noise only past the thoughts
        return fn

    with torch.no_grad():
        clean = latent_forward(model, batch.latent, thought_fn=hook(0.0))
        noisy = latent_forward(model, batch.latent, thought_fn=hook(100.0))
        short = latent_forward(model, layout(*_parts(tokenizer, EXAMPLES[0], 2), n_slots=2))
    assert torch.equal(clean.logits, noisy.logits)
    assert torch.allclose(clean.loss, short.loss, atol=1e-6)
    assert torch.allclose(clean.logits, short.logits, atol=1e-5)


def _parts(tokenizer, ex, n):
    ids = tokenizer.convert_tokens_to_ids
    prefix = tokenizer(ex.question + "\n")["input_ids"] + [ids(BOT)]
    target = tokenizer("### " + ex.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [prefix], [n], [[ids(EOT)] + target], [[-100] + target], ids(LATENT), tokenizer.pad_token_id


def test_heads_switched_off_compute_what_coconut_computes(tokenizer):
    """No latent head (z = h) and no stop head: the main model's CE is Coconut's final-stage loss."""
    model = tiny_model(tokenizer)
    heads = atp.AtpHeads(32, latent=False, stop=False)
    decoder = tiny_model(tokenizer, seed=1)
    ours = atp.atp_loss(model, heads, decoder, atp.make_batch(tokenizer, EXAMPLES, "atp_no_stop", CFG.final_stage, CFG),
                        CFG, kl_weight=0.001)
    theirs = latent_forward(model, coconut.make_batch(tokenizer, EXAMPLES, "coconut", CFG.final_stage, CFG,
                                                      random.Random(0)))
    assert torch.allclose(ours.ce, theirs.loss, atol=1e-6)
    assert ours.kl == 0 and ours.stop == 0 and ours.decoder > 0


def test_loss_parts_and_gradients(tokenizer):
    model, decoder = tiny_model(tokenizer), tiny_model(tokenizer, seed=1)
    heads = atp.AtpHeads(32)
    batch = atp.make_batch(tokenizer, EXAMPLES, "atp_vae", 2, CFG)
    out = atp.atp_loss(model, heads, decoder, batch, CFG, kl_weight=0.001)
    assert torch.allclose(out.loss.detach(), out.ce + 0.001 * out.kl + (out.decoder + out.stop) / batch.groups, atol=1e-5)
    out.loss.backward()
    for name, module in (("main", model), ("latent head", heads.latent), ("stop head", heads.stop),
                         ("decoder", decoder)):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name
    assert batch.groups == 2  # stage 2: two groups of slots


def test_the_decoder_loss_as_a_token_mean_or_as_the_reference_sums_each_step_text(tokenizer):
    """decoder_ce "token": per group, the CE summed over its target tokens / their number;
    "sequence" (the reference code's): / the number of rows' texts, so each text's token CE
    is summed. Computed here by hand from the decoder's per-row, per-group losses."""
    model, decoder = tiny_model(tokenizer), tiny_model(tokenizer, seed=1)
    heads = atp.AtpHeads(32)
    batch = atp.make_batch(tokenizer, EXAMPLES, "atp_vae", CFG.final_stage, CFG)
    parts = {}
    for ce in ("token", "sequence"):
        torch.manual_seed(5)  # the same sampled thoughts both times
        parts[ce] = atp.atp_loss(model, heads, decoder, batch, CFG, kl_weight=0.001, decoder_ce=ce)
        assert torch.allclose(parts[ce].loss.detach(), parts[ce].ce + 0.001 * parts[ce].kl
                              + (parts[ce].decoder + parts[ce].stop) / batch.groups, atol=1e-5)
    states = _thought_states(model, heads, batch)
    torch.manual_seed(5)  # the same draws again, in the same order
    z = torch.stack([heads.thought(h, sample=True)[0] for h in states], 1)
    B, G = len(EXAMPLES), batch.groups
    sums, counts = atp.decoder_loss(decoder, z.view(B * G, CFG.c_thought, -1), batch.decoder_ids.flatten(0, 1),
                                    batch.decoder_labels.flatten(0, 1))
    sums, counts = sums.view(B, G), counts.view(B, G)
    token = sum(sums[:, g].sum() / counts[:, g].sum() for g in range(G))
    sequence = sum(sums[:, g].sum() / (counts[:, g] > 0).sum() for g in range(G))
    assert torch.allclose(parts["token"].decoder, token.detach(), atol=1e-5)
    assert torch.allclose(parts["sequence"].decoder, sequence.detach(), atol=1e-4)
    assert parts["sequence"].decoder > 3 * parts["token"].decoder  # a step text has several tokens
    assert torch.equal(parts["token"].ce, parts["sequence"].ce)


def _thought_states(model, heads, batch):
    """The hidden states the thought hook sees, in order (the forward run again, recording)."""
    states = []

    def hook(h):
        states.append(h)
        return heads.thought(h, sample=True)[0]

    torch.manual_seed(5)
    latent_forward(model, batch.latent, thought_fn=hook)
    return states


def test_batched_generation_with_stop_equals_one_row_at_a_time(tokenizer):
    model = tiny_model(tokenizer)
    torch.manual_seed(3)
    heads = atp.AtpHeads(32).eval()
    prompts = [tokenizer(ex.question + "\n")["input_ids"] + [tokenizer.convert_tokens_to_ids(BOT)] for ex in EXAMPLES]
    prompts += [prompts[0][3:], prompts[2][:-7] + prompts[2][-1:]]
    # a stop rule that stops rows at different groups (by the sign of a thought's coordinates)
    stop_fn = lambda z: z[:, 0] > z[:, 1]  # noqa: E731
    kwargs = dict(max_new_tokens=8, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                  eot_id=tokenizer.convert_tokens_to_ids(EOT), thought_fn=lambda h: heads.thought(h, sample=False)[0],
                  stop_fn=stop_fn, group=2, return_thoughts=True)
    with torch.no_grad():
        batched = generate(model, prompts, n_latents=[6] * len(prompts), **kwargs)
        alone = [generate(model, [p], n_latents=[6], **kwargs) for p in prompts]
    assert batched.n_thoughts == [a.n_thoughts[0] for a in alone]
    assert len(set(batched.n_thoughts)) > 1  # rows did stop at different groups
    assert all(n % 2 == 0 for n in batched.n_thoughts)  # only at group boundaries
    assert batched.tokens == [a.tokens[0] for a in alone]
    for i, a in enumerate(alone):
        assert torch.allclose(batched.inputs[i], a.inputs[0], atol=1e-5)
    # a row stopped after k thoughts answers exactly as one asked for k thoughts and no stop
    k = batched.n_thoughts[0]
    plain = generate(model, prompts[:1], n_latents=[k], **{**kwargs, "stop_fn": None})
    assert plain.tokens[0] == batched.tokens[0]


def test_readout_scores_stop_and_decoded_steps():
    ex = EXAMPLES[2]  # 4 steps, 3 groups
    r = atp.readout(ex, ["<<20-2=18>>", "<< 18/2=9 >>", "<<9+3=12>><<12-1=10>>"], CFG)
    assert r == {"groups": 3, "stop_correct": True, "steps_exact": 3, "steps": 4}
    r = atp.readout(EXAMPLES[1], ["<<3*2=6>>"], CFG)
    assert r["stop_correct"] is False and r["steps_exact"] == 1
    # steps that name their person (the generator's): the formulas are compared, not names
    named = dataclasses.replace(ex, steps=tuple(f"P{i} {s}" for i, s in enumerate(ex.steps)))
    assert atp.readout(named, ["Ann <<20-2=18>>", "<<18/2=9>>", "<<9+3=12>>"], CFG)["steps_exact"] == 3


@pytest.mark.parametrize("atp_params, complaint", [
    ({"kl_weight": -0.1}, "atp.kl_weight"),
    ({"decoder_loss": "mean"}, "atp.decoder_loss"),
    ({"variants": ["atp_vae", "atp_sometimes"]}, "atp.variants"),
    ({"eval_sample": "maybe"}, "atp.eval_sample"),
    ({"eval_repeats": 4}, "atp.eval_repeats"),
    ({"stop": True}, "unknown key"),
])
def test_bad_params_name_the_key(tmp_path, atp_params, complaint):
    with pytest.raises(ConfigError, match=complaint):
        load_params(write_params(tmp_path / "params.yaml", atp=atp_params))


def test_readout_compares_sentences_in_the_graph_task():
    ex = Example("Q?", ("Tom is a wumpus.", "Every wumpus is a yumpus."), "Tom is a yumpus.", {"task": "prosqa"})
    got = atp.readout(ex, ["Tom is a wumpus.", "Every wumpus is a gorpus."], CoconutConfig(max_latent_stage=3))
    assert got == {"groups": 2, "stop_correct": True, "steps_exact": 1, "steps": 2}
