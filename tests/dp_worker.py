"""A few training steps on a tiny model and generated data, run by test_data_parallel.py
in one process or under `torchrun --nproc_per_node N` (accelerate over gloo on CPU):

    python tests/dp_worker.py OUT --method sft|coconut|rl|latent_rl --batch B --steps K

`--batch` is the global batch (rl, latent_rl: questions; their minibatch is 8 rollouts and
the global batch is the same in every run). rl: one PPO update (two epochs of two
minibatches) of an ATP policy on one recorded set of rollouts, each rank taking its
questions' groups; latent_rl: one Latent RL step. Rank 0 saves the final weights to OUT/model.safetensors. Every
rank records in OUT/wrote_<rank>.json the files under OUT it opened for writing, whether it
saved and whether it validated (what the test checks: rank 0 alone)."""

import argparse
import builtins
import copy
import io
import json
import os
import random
from pathlib import Path

import torch
from safetensors.torch import save_file

from latent_reasoning import coconut
from latent_reasoning.coconut import CoconutConfig
from latent_reasoning.config import ModelConfig, TrainConfig
from latent_reasoning.formats import collate, encode_examples, prompt_text, target_text
from latent_reasoning.generator import GeneratorConfig, SplitSizes, generate_splits
from latent_reasoning.latent import latent_forward
from latent_reasoning.modeling import build_model
from latent_reasoning.parallel import is_main_process
from latent_reasoning.tokenizer import build_tokenizer
from latent_reasoning.train_loop import train


def record_writes(folder: Path, written: list):
    """Note every file under `folder` this process opens for writing (DVCLive, JSON)."""
    real = io.open

    def spy(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and str(Path(file).resolve()).startswith(str(folder.resolve())):
            written.append(str(Path(file).resolve().relative_to(folder.resolve())))
        return real(file, mode, *args, **kwargs)

    builtins.open = io.open = spy


def rl_update(method: str, model, tok, data, questions: int, out: Path):
    """One RL update under data parallel (or in one process), the weights saved by rank 0."""
    from latent_reasoning import atp, latent_rl, rl
    from latent_reasoning.parallel import init_distributed, rank, world_size

    init_distributed()
    ccfg = CoconutConfig(c_thought=2, max_latent_stage=2)
    coconut.init_latent_tokens(model, tok)
    # no dropout anywhere: each rank's dropout masks would differ from one process's
    cfg = rl.RlConfig(questions=questions, group_size=4, minibatch=8, epochs=2, lr=1e-3, kl_coef=0.1,
                      max_new_tokens=8, latent_rl=latent_rl.LatentRlConfig(dropout=0.0, pos_weight=1.0))
    torch.manual_seed(0)
    if method == "rl":
        heads = atp.AtpHeads(model.config.hidden_size)
        policy = rl.Policy("atp", model, tok, ccfg, heads, build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2,
                                                                                   n_positions=128), tok, seed=1))
        reference = rl.Policy("atp", copy.deepcopy(model), tok, ccfg, copy.deepcopy(heads), None)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
        # the same recorded rollouts in every process (sampled alike); a rank keeps its
        # questions' groups. Rewards are drawn at random: an untrained model earns none
        ro = rl.rollout(policy, data[:questions], cfg.group_size, 1.0, cfg.max_new_tokens,
                        torch.Generator().manual_seed(0), decode_max_tokens=4)
        R = len(ro.prompts) // world_size()
        mine = list(range(rank() * R, (rank() + 1) * R))
        rewards = torch.rand(len(ro.prompts), generator=torch.Generator().manual_seed(1))
        advantages = rl.group_advantages(rewards[mine], cfg.group_size)  # within each question's group
        rl.ppo_update(policy, reference, optimizer, ro.subset(mine), advantages, cfg,
                      torch.Generator().manual_seed(2), step=0)
        weights = {**model.state_dict(), **{f"heads.{k}": v for k, v in heads.state_dict().items()}}
    else:
        policy = rl.Policy("coconut", model, tok, ccfg)
        head = latent_rl.ValueHead(model.config.hidden_size, cfg.latent_rl.hidden, 0.0)
        actor = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
        critic = torch.optim.AdamW(head.parameters(), lr=cfg.lr)
        latent_rl.latent_rl_step(policy, head, actor, critic, data[:questions * cfg.group_size], cfg, 0, 1.0)
        weights = {**model.state_dict(), **{f"value_head.{k}": v for k, v in head.state_dict().items()}}
    if is_main_process():
        save_file({k: v.contiguous() for k, v in weights.items() if k != "lm_head.weight"}, out / "model.safetensors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--method", choices=["sft", "coconut", "rl", "latent_rl"], required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    rank = int(os.environ.get("RANK", 0))

    data = generate_splits(0, GeneratorConfig(), SplitSizes(200, 8, 8))["train"]
    tok = build_tokenizer(prompt_text(ex) + target_text(ex, "cot") for ex in data)
    model = build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, n_positions=128), tok, seed=0)
    # eval_every past the end: the last step validates (rank 0 alone), no intermediate ones
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch, lr=1e-2, warmup_steps=1,
                      eval_every=1000, log_every=1)
    validated, saved, written = [], [], []
    record_writes(out, written)

    def validate(m):
        validated.append(rank)
        return 0.5

    def save(m, directory):
        saved.append(rank)
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in m.state_dict().items() if k != "lm_head.weight"},
                  Path(directory) / "model.safetensors")

    if is_main_process():
        save(model, out)  # the starting weights, to see that the steps move them
        (out / "model.safetensors").rename(out / "init.safetensors")
        saved.clear()
    if args.method in ("rl", "latent_rl"):
        saved.append(rank) if is_main_process() else None
        rl_update(args.method, model, tok, data, args.batch, out)
    elif args.method == "sft":
        train(model, encode_examples(tok, data, "cot"), cfg, make_batch=lambda s: collate(s, tok.pad_token_id),
              out_dir=out, live_dir=out / "live", validate=validate, save=save)
    else:
        ccfg = CoconutConfig(c_thought=2, max_latent_stage=2)
        coconut.init_latent_tokens(model, tok)
        rng = random.Random(0)
        train(model, data, cfg, make_batch=lambda exs: coconut.make_batch(tok, exs, "coconut", 1, ccfg, rng),
              loss_fn=lambda m, b: latent_forward(m, b).loss, out_dir=out, live_dir=out / "live",
              validate=validate, save=save)
    record = {"files": sorted(set(written)), "validated": validated, "saved": saved, "main": is_main_process()}
    (out / f"wrote_{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
