"""The RL loop: advantages, the clipped objective, replay against the rollout's own
log-probabilities for every policy, the coherence reward, errors."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from helpers import write_params
from latent_reasoning import atp, rl
from latent_reasoning.coconut import CoconutConfig, init_latent_tokens
from latent_reasoning.config import ConfigError, load_params
from latent_reasoning.modeling import use_single_query_sdpa
from latent_reasoning.schema import Example
from latent_reasoning.tokenizer import build_tokenizer

CFG = CoconutConfig(c_thought=2, max_latent_stage=3)
EXAMPLES = [
    Example("Ava has 12 apples. Ben has 5 more than Ava. How many apples does Ben have?", ("<<12+5=17>>",), "17"),
    Example("Cal has 3 pens. Dan has 2 times as many as Cal. Eve has 4 more than Dan. How many pens does Eve have?",
            ("<<3*2=6>>", "<<6+4=10>>"), "10"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([ex.question for ex in EXAMPLES] + ["".join(ex.steps) + " ### " + ex.answer for ex in EXAMPLES])


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = use_single_query_sdpa(GPT2LMHeadModel(config)).eval()
    init_latent_tokens(model, tokenizer)
    return model


def policy(kind, tokenizer):
    model = tiny_model(tokenizer)
    # an output bias towards eos, so that sampled answers end at different lengths
    head = torch.nn.Linear(32, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = 3.0
    model.lm_head = head
    if kind != "atp":
        return rl.Policy(kind, model, tokenizer, CFG)
    torch.manual_seed(1)
    heads = atp.AtpHeads(32)
    with torch.no_grad():  # stop about half the time, so rows use different numbers of thoughts
        heads.stop[2].bias.copy_(torch.tensor([0.0, 0.0]))
        heads.stop[2].weight.mul_(0.1)
    return rl.Policy(kind, model, tokenizer, CFG, heads, tiny_model(tokenizer, seed=2))


def test_advantages_are_zero_for_a_group_of_equal_rewards():
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    adv = rl.group_advantages(rewards, 4)
    assert torch.equal(adv[:4], torch.zeros(4))
    assert torch.allclose(adv[4:], torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-5)  # mean 0.5, std 0.5


def test_clipped_objective_equals_a_hand_computed_case():
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.5, 0.9, 1.0], [0.5, 1.1, 2.0]]))
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, clipped = rl.ppo_clip_loss(logp, old, adv, mask, clip=0.2)
    # row 0, A = 1:  min(1.5, 1.2) = 1.2;  min(0.9, 0.9) = 0.9;  third action masked
    # row 1, A = -2: min(-1.0, -1.6) = -1.6;  min(-2.2, -2.2) = -2.2;  min(-4, -2.4) = -4
    want = -(1.2 + 0.9 - 1.6 - 2.2 - 4.0) / 5
    assert math.isclose(loss.item(), want, rel_tol=1e-6)
    assert math.isclose(clipped.item(), 3 / 5, rel_tol=1e-6)  # ratios 1.5, 0.5, 2.0 are outside [0.8, 1.2]


@pytest.mark.parametrize("kind", ["cot", "coconut", "atp"])
def test_replayed_log_probs_equal_the_rollouts_before_any_update(tokenizer, kind):
    pol = policy(kind, tokenizer)
    g = torch.Generator().manual_seed(0)
    ro = rl.rollout(pol, EXAMPLES, group_size=4, temperature=1.0, max_new_tokens=6, generator=g)
    assert len(ro.actions) == 8 and ro.token_logp.shape[0] == 8
    assert len({len(a) for a in ro.actions}) > 1  # answers of different lengths
    with torch.no_grad():
        replayed = rl.replay(pol, ro)
    recorded = rl.recorded_logps(ro)
    assert replayed.keys() == recorded.keys()
    for key in recorded:
        assert torch.allclose(replayed[key], recorded[key], atol=1e-5), key
    mask = rl.action_mask(ro)
    assert torch.equal(rl.action_logps(recorded) != 0, (rl.action_logps(recorded) != 0) & (mask > 0))
    if kind == "atp":
        assert len(set(ro.n_thoughts)) > 1  # sampled stop decisions: rows think for different lengths
        assert all(len(g) == n // 2 for g, n in zip(ro.groups, ro.n_thoughts))  # each used group read back
    # a minibatch replays as the whole does, padded to the whole record's width even when
    # its own answers are shorter (the shortest answer alone)
    shortest = min(range(8), key=lambda i: len(ro.actions[i]))
    with torch.no_grad():
        part = rl.replay(pol, ro, [shortest])
    for key in recorded:
        assert torch.allclose(part[key], replayed[key][[shortest]], atol=1e-5), key


def test_an_rl_step_updates_the_policy_and_logs_every_part(tokenizer):
    pol = policy("atp", tokenizer)
    ref = policy("atp", tokenizer)
    cfg = rl.RlConfig(group_size=4, questions=2, minibatch=4, lr=1e-3, max_new_tokens=6)
    optimizer = torch.optim.AdamW(pol.parameters(), lr=cfg.lr)
    before = [p.detach().clone() for p in pol.parameters()]
    decoder_before = [p.detach().clone() for p in pol.decoder.parameters()]
    # every rollout gets the format reward and differs only in coherence / correctness
    logged = rl.rl_step(pol, ref, optimizer, EXAMPLES, cfg, rl.run_weights("atp_rl", cfg),
                        torch.Generator().manual_seed(0), step=0)
    for key in ("reward", "correct", "format", "coherence", "thoughts", "loss", "clip_fraction", "grad_norm", "kl"):
        assert math.isfinite(logged[key]), key
    assert logged["kl"] == pytest.approx(0.0, abs=1e-6)  # the first minibatch replays the starting policy
    changed = [not torch.equal(a, b) for a, b in zip(before, pol.parameters())]
    assert any(changed) or logged["grad_norm"] == 0  # advantages can all be zero on a tiny random model
    assert all(torch.equal(a, b) for a, b in zip(decoder_before, pol.decoder.parameters()))  # decoder frozen


def test_coherence_on_hand_written_steps():
    steps = ["<<3*2=6>>\n", "<<6+4=10>>\n"]
    assert rl.coherence(steps, "10") == 1.0
    assert rl.coherence(steps, "11") == 0.5  # the last result is not the answer
    assert rl.coherence(["<<3*2=6>>\n", "<<7+4=11>>\n"], "11") == 0.5  # 6 is never used
    # whole numbers, not substrings: 1 is not used by a step that reads 10 or 21
    assert rl.coherence(["<<3-2=1>>\n", "<<10+21=31>>\n"], "31") == 0.5
    # an empty or non-numeric result matches nothing (the reference's substring test matched all)
    assert rl.coherence(["<<3*2=>>\n", "<<6+4=10>>\n"], "10") == 0.5
    assert rl.coherence(["<<3*2=six>>\n", "<<6+4=10>>\n"], "10") == 0.5
    assert rl.coherence(["no formula here", "<<6+4=10>>\n"], "10") == 0.5
    assert rl.coherence([], "10") == 0.0  # nothing planned
    assert rl.coherence(["<<6+4=10>>\n"], None) == 0.0  # no answer to use the last step
    # a group holding two formulas (the last group takes the rest) counts both
    assert rl.coherence(["<<3*2=6>>\n", "<<6+4=10>>\n<<10-1=9>>\n"], "9") == 1.0


def test_reward_follows_the_weights():
    w = {"labels": True, "coherence": 0.1, "format": 0.5}
    assert rl.reward(True, True, 1.0, w) == pytest.approx(1.6)
    assert rl.reward(False, True, 1.0, w) == pytest.approx(0.5)  # coherence only counts when correct
    label_free = {"labels": False, "coherence": 1.0, "format": 0.5}
    assert rl.reward(False, True, 0.5, label_free) == pytest.approx(1.0)


def test_a_nan_reward_is_a_clear_error():
    ro = rl.Rollouts([EXAMPLES[0]], [[1]], [[1]], ["### 17"], [0], None, torch.zeros(1, 1), None, None)
    with pytest.raises(FloatingPointError, match="non-finite reward"):
        rl.score(ro, {"labels": True, "coherence": float("nan"), "format": 0.5})


@pytest.mark.parametrize("rl_params, complaint", [
    ({"runs": ["atp_rl", "ppo_magic"]}, "rl.runs"),
    ({"coherence_weight": -0.1}, "rl.coherence_weight"),
    ({"format_weight": -1}, "rl.format_weight"),
    ({"kl_coef": float("nan")}, "rl.kl_coef"),
    ({"group_size": 1}, "rl.group_size"),
    ({"temperature": 0}, "rl.temperature"),
])
def test_bad_params_name_the_key(tmp_path, rl_params, complaint):
    path = write_params(tmp_path / "params.yaml", rl=rl_params)
    with pytest.raises(ConfigError, match=complaint.replace(".", r"\.")):
        load_params(path)


def test_coherence_of_the_graph_tasks_sentences():
    """prosqa.py's steps: a step is coherent when its concept is the next step's subject,
    the last when the answer names its concept."""
    groups = ["Tom is a wumpus.", "Every wumpus is a yumpus.", "Every yumpus is a zhorpus."]
    assert rl.coherence(groups, "Tom is a zhorpus.") == 1.0
    assert rl.coherence(groups, "Tom is a brimpus.") == 2 / 3
    assert rl.coherence(["Tom is a wumpus.", "Every gorpus is a yumpus."], "Tom is a yumpus.") == 0.5
    assert rl.coherence(["no sentence here"], "Tom is a yumpus.") == 0.0


@pytest.mark.parametrize("kind", ["cot", "coconut", "atp"])
def test_bf16_rollouts_replay_close_to_their_record_with_fp32_log_probs(tokenizer, kind):
    """train.bf16 (on the CPU here: torch's CPU autocast): the forwards run in bf16, every
    log-probability is fp32, the replay of an unchanged policy is its rollout's record up to
    bf16 rounding, and a whole RL step stays finite."""
    pol = policy(kind, tokenizer)
    pol.bf16 = True
    with pol.autocast():  # the switch reaches the forwards
        assert pol.model(input_ids=torch.tensor([[1, 2]])).logits.dtype == torch.bfloat16
    ro = rl.rollout(pol, EXAMPLES, group_size=4, temperature=1.0, max_new_tokens=6,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        replayed = rl.replay(pol, ro)
    for key, recorded in rl.recorded_logps(ro).items():
        assert recorded.dtype == replayed[key].dtype == torch.float32, key
        # bf16 keeps 8 bits of mantissa: an incremental and a full forward round differently
        assert (replayed[key] - recorded).abs().max() < 0.05, key
    cfg = rl.RlConfig(group_size=4, questions=2, minibatch=4, lr=1e-3, max_new_tokens=6)
    logged = rl.rl_step(pol, policy(kind, tokenizer), torch.optim.AdamW(pol.parameters(), lr=cfg.lr), EXAMPLES, cfg,
                        rl.run_weights("atp_rl" if kind == "atp" else "grpo_cot", cfg),
                        torch.Generator().manual_seed(0), step=0)
    assert all(math.isfinite(v) for v in logged.values()), logged


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("kind", ["cot", "coconut", "atp"])
@pytest.mark.parametrize("bf16", [False, True])
def test_an_rl_step_on_a_gpu_keeps_everything_there(tokenizer, kind, bf16):
    """GPU: the policy, its record and its update on CUDA (a tensor left on the CPU would
    raise), and the rollouts of one seed sample the same actions as on the CPU in fp32."""
    pol, cpu = policy(kind, tokenizer).to("cuda"), policy(kind, tokenizer)
    pol.bf16 = bf16
    ro = rl.rollout(pol, EXAMPLES, group_size=4, temperature=1.0, max_new_tokens=6,
                    generator=torch.Generator().manual_seed(0))
    assert ro.token_logp.is_cuda and (ro.z is None or ro.z.is_cuda)
    if not bf16:  # the noise is drawn on the CPU: one seed, the same draws
        ro_cpu = rl.rollout(cpu, EXAMPLES, group_size=4, temperature=1.0, max_new_tokens=6,
                            generator=torch.Generator().manual_seed(0))
        assert sum(a == b for a, b in zip(ro.actions, ro_cpu.actions)) >= 6  # near-ties may round apart
    cfg = rl.RlConfig(group_size=4, questions=2, minibatch=4, lr=1e-3, max_new_tokens=6)
    ref = policy(kind, tokenizer).to("cuda")
    before = [p.detach().clone() for p in pol.parameters()]
    logged = rl.rl_step(pol, ref, torch.optim.AdamW(pol.parameters(), lr=cfg.lr), EXAMPLES, cfg,
                        rl.run_weights("atp_rl" if kind == "atp" else "grpo_cot", cfg),
                        torch.Generator().manual_seed(0), step=0)
    assert all(math.isfinite(v) for v in logged.values()), logged
    assert all(p.is_cuda for p in pol.parameters())
    assert logged["grad_norm"] == 0 or any(not torch.equal(a, b) for a, b in zip(before, pol.parameters()))
