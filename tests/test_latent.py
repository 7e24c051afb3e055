"""The shared latent core: the KV-cached training forward with continuous thoughts against
a slow reference that recomputes the whole prefix at every thought; batched latent
generation against one row at a time; gradients through the chain of thoughts."""

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from latent_reasoning.formats import IGNORE
from latent_reasoning.generation import generate
from latent_reasoning.latent import latent_forward, layout, replay_forward

V, PAD, BOT, EOT, LATENT, EOS = 50, 0, 2, 3, 4, 1


def tiny(kind):
    torch.manual_seed(0)
    if kind == "gpt2":
        m = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128))
    else:
        cfg = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128)
        m = LlamaForCausalLM(LlamaConfig(**cfg)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**cfg))
    with torch.no_grad():  # larger weights: outputs depend clearly on the thoughts
        for p in m.parameters():
            p.mul_(4)
    return m.float()


def rows():
    g = torch.Generator().manual_seed(3)
    def r(n):
        return torch.randint(5, V, (n,), generator=g).tolist()
    # (question, thoughts, answer tokens): mixed question lengths and thought counts
    return [(r(5), 3, r(4)), (r(9), 1, r(2)), (r(2), 0, r(6)), (r(7), 2, r(3))]


def reference_row(model, question, n, answer):
    """The whole prefix recomputed for every thought (how the Coconut reference trains)."""
    tokens = question + [BOT] + [LATENT] * n + [EOT] + answer
    labels = [IGNORE] * (len(question) + 2 + n) + answer
    embeds = model.get_input_embeddings()(torch.tensor([tokens]))
    for k in range(n):
        col = len(question) + 1 + k
        h = model(inputs_embeds=embeds[:, :col], output_hidden_states=True).hidden_states[-1][:, -1]
        embeds = torch.cat([embeds[:, :col], h[:, None], embeds[:, col + 1:]], dim=1)
    logits = model(inputs_embeds=embeds).logits[0]
    target = torch.tensor(labels[1:])
    loss = F.cross_entropy(logits[:-1], target, ignore_index=IGNORE)
    answer_logits = logits[len(question) + 1 + n: -1]  # predicting the answer tokens
    return loss, answer_logits


def make_batch(data):
    return layout([q + [BOT] for q, _, _ in data], [n for _, n, _ in data],
                  [[EOT] + a for _, _, a in data], [[IGNORE] + a for _, _, a in data], LATENT, PAD)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2"])
def test_cached_forward_equals_slow_reference_row_by_row(kind):
    model = tiny(kind).eval()
    data = rows()
    for row in data:  # each row alone: same loss and answer logits as the reference
        out = latent_forward(model, make_batch([row]))
        ref_loss, ref_logits = reference_row(model, *row)
        assert torch.allclose(out.loss, ref_loss, atol=1e-5), (out.loss, ref_loss)
        got = out.logits[0, 1: 1 + len(row[2])]  # suffix: <eot> then the answer
        assert torch.allclose(got, ref_logits, atol=1e-5)
    # the mixed batch gives every row the result it gets alone
    batch = make_batch(data)
    out = latent_forward(model, batch)
    for i, row in enumerate(data):
        alone = latent_forward(model, make_batch([row]))
        n_answer = len(row[2])
        assert torch.allclose(out.logits[i, 1: 1 + n_answer], alone.logits[0, 1: 1 + n_answer], atol=1e-5)
        assert torch.allclose(out.thoughts[i, : row[1]], alone.thoughts[0, : row[1]], atol=1e-5)
    # and the batch loss is the token-weighted mean of the rows' losses
    total = sum(reference_row(model, *row)[0] * len(row[2]) for row in data) / sum(len(r[2]) for r in data)
    assert torch.allclose(out.loss, total, atol=1e-5)
    # a batch with no thought in any row (one plain pass): each row as the reference
    zero = [(q, 0, a) for q, _, a in data]
    out = latent_forward(model, make_batch(zero))
    assert out.thoughts.shape[1] == 0
    for i, row in enumerate(zero):
        assert torch.allclose(out.logits[i, 1: 1 + len(row[2])], reference_row(model, *row)[1], atol=1e-5)


def test_gradients_reach_the_first_thought():
    model = tiny("gpt2").train()
    batch = make_batch(rows())
    seen = []

    def thought_fn(h):
        h.retain_grad()
        seen.append(h)
        return h

    out = latent_forward(model, batch, thought_fn=thought_fn)
    out.loss.backward()
    assert seen[0].grad is not None and seen[0].grad[0].abs().sum() > 0  # row 0 has 3 thoughts
    # the model's weights get gradients through the thought chain too
    assert model.transformer.wte.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_replay_with_known_thoughts_equals_the_recurrent_forward(kind):
    # RL replays sampled latents: with every slot input known, one pass must compute what
    # the recurrence computes, including the states the hook saw past a row's last thought
    model = tiny(kind).eval()
    data = rows()
    batch = layout([q + [BOT] for q, _, _ in data], [n for _, n, _ in data], [[EOT] + a for _, _, a in data],
                   [[IGNORE] + a for _, _, a in data], LATENT, PAD, n_slots=4)  # a spare slot for every row
    z = torch.randn(len(data), 4, 32, generator=torch.Generator().manual_seed(0))
    seen = []

    def known(h):
        seen.append(h)
        return z[:, len(seen) - 1]

    want = latent_forward(model, batch, thought_fn=known)
    got = replay_forward(model, batch, z)
    assert torch.allclose(got.logits, want.logits, atol=1e-5)
    assert torch.allclose(got.loss, want.loss, atol=1e-6)
    assert torch.allclose(got.thoughts, torch.stack(seen, dim=1), atol=1e-5)
    # the thoughts matter: other inputs in the used slots change the answer's logits
    assert not torch.allclose(replay_forward(model, batch, z.flip(-1)).logits[0], got.logits[0], atol=1e-3)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_latent_generation_batched_equals_alone_and_reference(kind):
    model = tiny(kind).eval()
    data = rows()
    prompts = [q + [BOT] for q, _, _ in data]
    counts = [n for _, n, _ in data]
    batched = generate(model, prompts, max_new_tokens=6, eos_id=EOS, pad_id=PAD, n_latents=counts, eot_id=EOT,
                       return_thoughts=True)
    for i, (p, n) in enumerate(zip(prompts, counts)):
        alone = generate(model, [p], max_new_tokens=6, eos_id=EOS, pad_id=PAD, n_latents=[n], eot_id=EOT,
                         return_thoughts=True)
        assert batched.tokens[i] == alone.tokens[0]
        assert batched.thoughts[i].shape[0] == n
        if n:
            assert torch.allclose(batched.thoughts[i], alone.thoughts[0], atol=1e-5)
        # reference: recompute everything, no cache
        embeds = model.get_input_embeddings()(torch.tensor([p]))
        for _ in range(n):
            h = model(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1][:, -1:]
            embeds = torch.cat([embeds, h], dim=1)
        embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([[EOT]]))], dim=1)
        tokens = []
        for _ in range(6):
            t = model(inputs_embeds=embeds).logits[0, -1].argmax().item()
            if t == EOS:
                break
            tokens.append(t)
            embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([[t]]))], dim=1)
        assert batched.tokens[i] == tokens


@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2"])
def test_single_query_attention_equals_sdpa(kind, monkeypatch):
    """The matmul path for one query per row (generation steps, thoughts) gives SDPA's
    results: thoughts, tokens, training loss and gradients (Llama and Qwen2 have 2 query
    heads per KV head)."""
    import copy

    from latent_reasoning import modeling

    sdpa = tiny(kind).eval()
    fast = modeling.use_single_query_sdpa(copy.deepcopy(sdpa))
    assert fast.config._attn_implementation == modeling.SINGLE_QUERY_SDPA
    fallback_query_lengths = []  # the calls single_query_sdpa hands on to SDPA
    original = modeling.sdpa_attention_forward
    def recording(module, query, *args, **kwargs):
        fallback_query_lengths.append(query.shape[2])
        return original(module, query, *args, **kwargs)
    monkeypatch.setattr(modeling, "sdpa_attention_forward", recording)
    data = rows()
    prompts = [q + [BOT] for q, _, _ in data]
    counts = [n for _, n, _ in data]
    kwargs = dict(max_new_tokens=6, eos_id=EOS, pad_id=PAD, n_latents=counts, eot_id=EOT, return_thoughts=True)
    want, got = generate(sdpa, prompts, **kwargs), generate(fast, prompts, **kwargs)
    assert got.tokens == want.tokens
    assert fallback_query_lengths and 1 not in fallback_query_lengths  # prompts went to SDPA, single steps not
    for a, b in zip(got.thoughts, want.thoughts):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    batch = make_batch(data)
    out_sdpa, out_fast = latent_forward(sdpa, batch), latent_forward(fast, batch)  # eval: no dropout
    assert torch.allclose(out_fast.loss, out_sdpa.loss, atol=1e-5)
    out_sdpa.loss.backward()
    out_fast.loss.backward()
    for (name, p), q in zip(sdpa.named_parameters(), fast.parameters()):
        # fp32 rounding, relative to the gradient's scale (these weights are 4x enlarged)
        assert (q.grad - p.grad).abs().max() <= 1e-5 * max(1.0, p.grad.abs().max().item()), name
