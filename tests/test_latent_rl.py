"""Latent RL: the value head's loss and ROC-AUC, which parameters each loss moves,
gradient clipping, the chain-gradient switch, the states it reads, and its params."""

import math

import pytest
import torch

from helpers import write_params
from latent_reasoning import coconut, latent_rl, rl
from latent_reasoning.config import ConfigError, load_params
from latent_reasoning.latent import latent_forward, layout, replay_forward
from latent_reasoning.tokenizer import EOT, LATENT
from test_rl import CFG, EXAMPLES, tiny_model, tokenizer  # noqa: F401  (tokenizer: a fixture)


def coconut_policy(tokenizer):
    return rl.Policy("coconut", tiny_model(tokenizer), tokenizer, CFG)


def test_value_loss_equals_a_hand_computed_case():
    logits = torch.tensor([[0.0, 2.0, 5.0], [-1.0, 0.5, 9.0]])
    correct = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # the third slot is past both rows' thoughts
    loss = latent_rl.value_loss(logits, correct, mask, pos_weight=3.0)
    sig = lambda x: 1 / (1 + math.exp(-x))
    # correct row: -3 log sigma(x) per position; wrong row: -log(1 - sigma(x))
    want = (-3 * math.log(sig(0.0)) - 3 * math.log(sig(2.0)) - math.log(1 - sig(-1.0)) - math.log(1 - sig(0.5))) / 4
    assert math.isclose(loss.item(), want, rel_tol=1e-6)


def test_roc_auc_counts_ties_half_and_gives_its_z():
    scores = [0.9, 0.8, 0.8, 0.3, 0.1]
    labels = [1, 1, 0, 0, 1]
    # positive/negative pairs: (0.9 > 0.8, 0.9 > 0.3), (0.8 = 0.8: half, 0.8 > 0.3), (0.1 < both)
    auc, z = latent_rl.roc_auc(scores, labels)
    assert math.isclose(auc, 3.5 / 6, rel_tol=1e-9)
    assert math.isclose(z, (3.5 / 6 - 0.5) / math.sqrt(6 / (12 * 3 * 2)), rel_tol=1e-9)
    assert latent_rl.roc_auc([1.0, 2.0], [1, 1])[0] != latent_rl.roc_auc([1.0, 2.0], [1, 1])[0]  # one class: NaN
    assert latent_rl.roc_auc([0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1])[0] == 1.0


def answered(tokenizer, policy):
    return latent_rl.answer(policy, EXAMPLES * 2, max_new_tokens=6)


def test_replayed_states_equal_the_recurrent_forward_states(tokenizer):
    """The teacher-forced pass over the recorded thoughts reads the same states at the
    latent positions as the recurrent forward that computed them."""
    pol = coconut_policy(tokenizer)
    ans = answered(tokenizer, pol)
    rows = list(range(len(ans.prompts)))
    with torch.no_grad():
        replayed, mask = latent_rl.latent_states(pol, ans, rows, chain_grad=False)
        chained, _ = latent_rl.latent_states(pol, ans, rows, chain_grad=True)
    assert mask.sum() == sum(ans.n_thoughts) == len(rows) * CFG.max_thoughts
    assert torch.allclose(replayed, chained, atol=1e-5)
    # and slot k's state is what generation fed as thought k + 1 (hidden feedback)
    for i in rows:
        assert torch.allclose(replayed[i, :-1], ans.thoughts[i][1:], atol=1e-5)


def test_latent_forward_and_replay_return_the_same_slot_states(tokenizer):
    model = tiny_model(tokenizer)
    eot, lat, pad = tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(LATENT), tokenizer.pad_token_id
    prompts = [coconut.inference_prompt(tokenizer, ex, "coconut", CFG.final_stage, CFG) for ex in EXAMPLES]
    batch = layout(prompts, [2, 4], [[eot, 5, 6], [eot, 7]], [[-100, 5, 6], [-100, 7]], lat, pad, n_slots=4)
    with torch.no_grad():
        ref = latent_forward(model, batch)
        rep = replay_forward(model, batch, ref.thoughts)
    assert ref.states.shape == rep.states.shape == (2, 4, 32)
    assert torch.allclose(ref.states[0, :2], rep.states[0, :2], atol=1e-5)  # row 0 has 2 thoughts
    assert torch.allclose(ref.states[1], rep.states[1], atol=1e-5)


def losses(tokenizer, critic_backbone):
    pol = coconut_policy(tokenizer)
    ans = answered(tokenizer, pol)
    ans.correct = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.manual_seed(0)
    head = latent_rl.ValueHead(32, (16, 8), dropout=0.0)
    states, mask = latent_rl.latent_states(pol, ans, list(range(4)))
    actor, critic = latent_rl.actor_critic_losses(head, states, mask, ans.correct, 1.0, critic_backbone)
    return pol, head, actor, critic


def grads(params):
    return [p.grad for p in params]


def moved(params):
    return any(g is not None and g.abs().sum() > 0 for g in grads(params))


def test_the_actor_moves_the_backbone_and_not_the_head(tokenizer):
    pol, head, actor, _ = losses(tokenizer, critic_backbone=False)
    actor.backward()
    assert moved(pol.parameters())
    assert all(g is None for g in grads(head.parameters()))


@pytest.mark.parametrize("critic_backbone", [False, True])
def test_the_critic_moves_the_head_and_the_backbone_only_when_asked(tokenizer, critic_backbone):
    pol, head, _, critic = losses(tokenizer, critic_backbone)
    critic.backward()
    assert moved(head.parameters())
    assert moved(pol.parameters()) == critic_backbone


class RecordingSGD(torch.optim.SGD):
    """SGD that records the norm of the gradient it applies at each step."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.applied = []

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.applied.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        return super().step(closure)


@pytest.mark.parametrize("clip", [1e-4, 1e3])
def test_gradient_clipping_bounds_the_gradient_the_optimisers_apply(tokenizer, clip):
    pol = coconut_policy(tokenizer)
    torch.manual_seed(0)
    head = latent_rl.ValueHead(32, (16, 8), dropout=0.0)
    actor_opt, critic_opt = RecordingSGD(pol.parameters(), 1e-3), RecordingSGD(head.parameters(), 1e-3)
    cfg = rl.RlConfig(minibatch=2, grad_clip=clip, max_new_tokens=6)
    logged = latent_rl.latent_rl_step(pol, head, actor_opt, critic_opt, EXAMPLES * 2, cfg, step=0, pos_weight=1.0)
    assert len(actor_opt.applied) == len(critic_opt.applied) == 2  # 4 questions, minibatches of 2
    if clip < 1:  # the gradients were larger than the bound, and what was applied is within it
        assert logged["grad_norm"] > clip and logged["head_grad_norm"] > clip
        assert max(actor_opt.applied + critic_opt.applied) <= clip * (1 + 1e-4)
    else:  # a bound above the gradient changes nothing: the norm measured before clipping is applied
        assert sum(actor_opt.applied) / 2 == pytest.approx(logged["grad_norm"], rel=1e-4)
        assert sum(critic_opt.applied) / 2 == pytest.approx(logged["head_grad_norm"], rel=1e-4)


@pytest.mark.parametrize("chain_grad", [False, True])
def test_with_chain_grad_the_actor_gradient_reaches_the_first_thought(tokenizer, monkeypatch, chain_grad):
    pol = coconut_policy(tokenizer)
    ans = answered(tokenizer, pol)
    fed = []

    def recording_thought_fn(model, cfg):  # the latent core's hook, keeping each thought it feeds
        def feed(h):
            h.retain_grad()
            fed.append(h)
            return h
        return feed

    monkeypatch.setattr(coconut, "thought_fn", recording_thought_fn)
    head = latent_rl.ValueHead(32, (16, 8), dropout=0.0)
    states, mask = latent_rl.latent_states(pol, ans, list(range(4)), chain_grad=chain_grad)
    actor, _ = latent_rl.actor_critic_losses(head, states, mask, torch.ones(4), 1.0)
    actor.backward()
    if chain_grad:  # the thoughts were recomputed, and the gradient flowed back to the first
        assert len(fed) == CFG.max_thoughts
        assert fed[0].grad is not None and fed[0].grad.abs().sum() > 0
    else:  # the recorded thoughts are inputs: nothing recomputes them
        assert fed == []


def test_fit_value_head_learns_a_separable_signal():
    torch.manual_seed(0)
    correct = (torch.arange(200) % 3 == 0).float()
    states = torch.randn(200, 3, 8)
    states[:, :, 0] += 2.0 * correct[:, None]  # one direction says "this rollout is correct"
    mask = torch.ones(200, 3)
    mask[::4, 2] = 0
    head = latent_rl.ValueHead(8, (16,), dropout=0.0)
    cfg = latent_rl.LatentRlConfig(value_epochs=40, value_lr=1e-2, value_batch=64)
    out = latent_rl.fit_value_head(head, states, mask, correct, cfg, torch.Generator().manual_seed(0))
    assert out["value_pos_weight"] == pytest.approx(2.0, rel=0.2)  # a third correct: negatives / positives
    assert out["value_val_auc"] > 0.8
    assert latent_rl.head_auc(head, states, mask, correct)[0] > 0.8


def test_latent_rl_params_are_checked_by_key(tmp_path):
    with pytest.raises(ConfigError, match=r"rl.latent_rl.*pos_weight"):
        load_params(write_params(tmp_path / "a.yaml", rl={"latent_rl": {"pos_weight": -1.0}}))
    with pytest.raises(ConfigError, match=r"rl.latent_rl: unknown key"):
        load_params(write_params(tmp_path / "b.yaml", rl={"latent_rl": {"chain_gradient": True}}))
    with pytest.raises(ConfigError, match=r"rl.latent_rl.*hidden"):
        load_params(write_params(tmp_path / "c.yaml", rl={"latent_rl": {"hidden": [128, 0]}}))
    params = load_params(write_params(tmp_path / "d.yaml", rl={"latent_rl": {"chain_grad": True}}))
    assert params.rl.latent_rl.chain_grad and rl.method("latent_rl") == "latent_rl" and rl.method("atp_rl") == "grpo"
