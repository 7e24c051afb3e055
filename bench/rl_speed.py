"""Speed of the RL loop (rl.py), measured in one run on one model (ATP-Latent policy: a
freshly initialised GPT-2-style model with fresh heads, its copy as step decoder).

1. Rollouts: Q questions x G rollouts in one batched generation (rl.rollout) against one
   question at a time (G rollouts per call, as the reference codes loop over questions).
2. Replay: the recorded latents fed back as known inputs in one pass (latent.replay_forward)
   against recomputing the thoughts recurrently (latent.latent_forward, one pass per slot,
   the hook returning the recorded latents), with gradients, forward + backward.
3. One RL step split into its parts: rollout (generation), reward (the decoder reading
   every used step group back, then scoring), replay of the starting policy (for KL) and
   the update (replay with gradients, backward, AdamW), each timed on its own.

    python bench/rl_speed.py [--questions 16] [--group 8] [--threads 2]
"""

import argparse
import copy
import time

import torch

from latent_reasoning import atp, rl
from latent_reasoning.coconut import CoconutConfig, init_latent_tokens
from latent_reasoning.latent import latent_forward, layout, replay_forward
from latent_reasoning.tokenizer import EOT, LATENT
from setup import bench_setup, median


def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data, tok, model = bench_setup(args.threads, 64)
    init_latent_tokens(model, tok)
    ccfg = CoconutConfig()
    heads = atp.AtpHeads(model.config.hidden_size)
    policy = rl.Policy("atp", model, tok, ccfg, heads, copy.deepcopy(model))
    questions = data["test_gsm"][: args.questions]
    cfg = rl.RlConfig(group_size=args.group, questions=args.questions)
    R = args.questions * args.group
    g = torch.Generator().manual_seed(0)
    print(f"{R} rollouts per step ({args.questions} questions x {args.group}), up to {ccfg.max_thoughts} thoughts, "
          f"{cfg.max_new_tokens} answer tokens, {args.threads} threads")

    # 1. rollouts, batched against one question at a time (no decoder: generation alone)
    def batched():
        return rl.rollout(policy, questions, args.group, 1.0, cfg.max_new_tokens, g, decode_max_tokens=1)

    def per_question():
        return [rl.rollout(policy, [q], args.group, 1.0, cfg.max_new_tokens, g, decode_max_tokens=1)
                for q in questions]

    t_batched, t_alone = timed(batched, args.repeats), timed(per_question, args.repeats)
    print(f"rollouts: batched {R / t_batched:.0f} trajectories/s, one question at a time {R / t_alone:.0f}/s "
          f"({t_alone / t_batched:.1f}x)")

    # 2. replay: one pass with the recorded latents against the recurrence
    ro = rl.rollout(policy, questions, args.group, 1.0, cfg.max_new_tokens, g)
    eot = tok.convert_tokens_to_ids(EOT)
    batch = layout(ro.prompts, ro.n_thoughts, [[eot] + a for a in ro.actions], [[-100] + a for a in ro.actions],
                   tok.convert_tokens_to_ids(LATENT), tok.pad_token_id, n_slots=ccfg.max_thoughts)

    def one_pass():
        out = replay_forward(model, batch, ro.z)
        out.loss.backward()

    def recurrent():
        seen = []

        def known(h):
            seen.append(h)
            return ro.z[:, len(seen) - 1]

        latent_forward(model, batch, thought_fn=known).loss.backward()

    model.train()
    t_pass, t_rec = timed(one_pass, args.repeats), timed(recurrent, args.repeats)
    print(f"replay (forward + backward, {R} rows): one pass {t_pass * 1000:.0f} ms, recurrent "
          f"{t_rec * 1000:.0f} ms ({t_rec / t_pass:.1f}x)")

    # 3. one RL step, part by part
    reference = rl.Policy("atp", copy.deepcopy(model), tok, ccfg, copy.deepcopy(heads), None)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    weights = rl.run_weights("atp_rl", cfg)
    parts = {}
    parts["rollout"] = timed(batched, args.repeats)
    used = [ro.z[i, :n] for i, n in enumerate(ro.n_thoughts)]
    parts["reward (decoder reads back, score)"] = timed(
        lambda: (atp.read_back(policy.decoder, tok, used, ccfg.c_thought, 24), rl.score(ro, weights)), args.repeats)
    with torch.no_grad():
        parts["replay of the starting policy"] = timed(lambda: rl.replay(reference, ro), args.repeats)
    old, mask = rl.action_logps(rl.recorded_logps(ro)), rl.action_mask(ro)
    adv = torch.randn(R)

    def update():
        for start in range(0, R, cfg.minibatch):
            rows = list(range(start, min(R, start + cfg.minibatch)))
            loss, _ = rl.ppo_clip_loss(rl.action_logps(rl.replay(policy, ro, rows)), old[rows], adv[rows],
                                       mask[rows], cfg.clip)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    parts["update (replay, backward, AdamW)"] = timed(update, args.repeats)
    total = sum(parts.values())
    print(f"one RL step, {total:.2f} s:")
    for name, t in parts.items():
        print(f"  {name:40s} {t:6.2f} s  {100 * t / total:4.0f}%")
    print(f"bounded by: {max(parts, key=parts.get)}")


if __name__ == "__main__":
    main()
