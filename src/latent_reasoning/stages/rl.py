"""Stage `rl`: every run in `rl.runs` (rl.py), each from its starting method's model:

    atp_rl                 atp_vae   the reward with rl.coherence_weight
    atp_rl_no_coherence    atp_vae   coherence weight 0
    atp_rl_coherence_only  atp_vae   no answer labels: format + coherence
    grpo_cot               cot       GRPO in language space
    grpo_coconut           coconut   GRPO on the answer tokens after deterministic thoughts
    latent_rl              coconut   Latent RL: a value head on the thoughts, fitted first to
                                     the start model's rollouts, then actor-critic (latent_rl.py)

Each run takes `rl.steps` RL steps of `rl.questions` training questions x `rl.group_size`
rollouts and keeps its last model (validation accuracy before and after is logged).
Writes models/rl/<run>/ (loadable as its starting method is: an ATP run keeps its heads
and the frozen step decoder; latent_rl its value head), DVCLive logs in
reports/train/rl/<run> and reports/train/rl.json."""

import argparse
import copy
import math
import random
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import atp, latent_rl, rl
from ..config import load_params
from ..devices import pick_device
from ..evaluation import evaluate
from ..inference import default_model_dir
from ..modeling import load_checkpoint
from ..parallel import barrier, init_distributed, is_main_process, rank, threads_per_job, train_variants, world_size
from ..resume import for_run
from ..schema import read_jsonl
from ..tokenizer import load_tokenizer
from ..train_loop import open_live


def load_policy(run: str, params, start_dir: Path) -> rl.Policy:
    kind = rl.policy_kind(run)
    model = load_checkpoint(start_dir, f"{start_dir} (the {rl.start_method(run)} model {run} starts from)")
    tokenizer = load_tokenizer(start_dir)
    heads = decoder = None
    if kind == "atp":
        heads = atp.load_heads(start_dir, model.config.hidden_size, rl.start_method(run))
        decoder = load_checkpoint(start_dir / atp.DECODER_DIR, f"{start_dir}/{atp.DECODER_DIR} (the step decoder)")
    return rl.Policy(kind, model, tokenizer, params.coconut, heads, decoder, bf16=params.train.bf16)


def validate(policy: rl.Policy, valid, params) -> float | None:
    """Validation accuracy, on rank 0 (the other ranks of a data-parallel run wait: None)."""
    if not is_main_process():
        barrier()
        return None
    with policy.autocast():
        metrics, _ = evaluate(policy.model, policy.tokenizer, valid, batch_size=params.train.eval_batch_size,
                              max_new_tokens=params.train.eval_max_new_tokens, **rl.inference_kwargs(policy))
    barrier()
    return metrics["accuracy"]


def heldout_auc(policy: rl.Policy, head, heldout, max_new_tokens: int):
    """The policy answers the held-out questions; the head's ROC-AUC and its z on those
    rollouts (None, JSON's null, where they are all right or all wrong) and their accuracy."""
    held = latent_rl.answer_all(policy, heldout, max_new_tokens)
    auc, z = latent_rl.head_auc(head, *latent_rl.value_data(policy, held), held.correct)
    defined = lambda x: x if math.isfinite(x) else None
    return defined(auc), defined(z), held.correct.mean().item()


def value_split(cfg: rl.RlConfig, train_examples, seed: int):
    """Latent RL's seeded split of the training set: held-out questions (the head's ROC-AUC),
    value questions (its data) and the pool the RL steps draw from."""
    lcfg = cfg.latent_rl
    shuffled = random.Random(seed).sample(train_examples, len(train_examples))
    heldout = shuffled[: lcfg.heldout_questions]
    value = shuffled[lcfg.heldout_questions: lcfg.heldout_questions + lcfg.value_questions]
    pool = shuffled[lcfg.heldout_questions + lcfg.value_questions:]
    if len(pool) < cfg.questions * cfg.group_size:
        raise ValueError(f"rl.latent_rl: {len(train_examples)} training questions leave {len(pool)} for the RL "
                         f"steps after heldout_questions and value_questions; a step needs "
                         f"{cfg.questions * cfg.group_size}")
    return heldout, value, pool


def start_value_head(policy: rl.Policy, cfg: rl.RlConfig, train_examples, seed: int):
    """Latent RL's first phase: the start model answers held-out and value questions
    (value_split), the value head is fitted and its ROC-AUC measured on the held-out
    rollouts. Returns the head, its pos_weight, the questions left for the RL steps and
    what the summary reports."""
    lcfg = cfg.latent_rl
    heldout, value, pool = value_split(cfg, train_examples, seed)
    ans = latent_rl.answer_all(policy, value, cfg.max_new_tokens)
    states, mask = latent_rl.value_data(policy, ans)
    head = latent_rl.ValueHead(states.shape[-1], lcfg.hidden, lcfg.dropout).to(states.device)
    fitted = latent_rl.fit_value_head(head, states, mask, ans.correct, lcfg, torch.Generator().manual_seed(seed))
    auc, z, correct = heldout_auc(policy, head, heldout, cfg.max_new_tokens)
    summary = {**fitted, "value_auc_before": auc, "value_auc_before_z": z, "heldout_rollouts": len(heldout),
               "heldout_correct_before": correct}
    print(f"value head: validation ROC-AUC {fitted['value_val_auc']} (epoch {fitted['value_best_epoch']}), "
          f"held-out ROC-AUC {auc} (z = {z}, {len(heldout)} rollouts)", flush=True)
    return head, fitted["value_pos_weight"], pool, heldout, summary


def train_run(run: str, args: argparse.Namespace, threads: int) -> dict:
    init_distributed()  # data parallel (torchrun / accelerate launch): one share of each step's questions per rank
    params = load_params(args.params)
    cfg = params.rl
    torch.set_num_threads(threads)
    torch.manual_seed(params.base.seed)
    start_dir = default_model_dir(rl.start_method(run))
    if args.start_root:
        start_dir = Path(args.start_root) / start_dir
    out = rl.model_dir(run, args.out)
    # one GPU per process where there are GPUs (the rank's own under a launcher), else the CPU
    policy = load_policy(run, params, start_dir).to(pick_device())
    weights = rl.run_weights(run, cfg)
    if rl.method(run) == "grpo":  # the starting policy, frozen: KL to it is logged (and penalised with kl_coef)
        reference = rl.Policy(policy.kind, copy.deepcopy(policy.model), policy.tokenizer, policy.ccfg,
                              copy.deepcopy(policy.heads), None)
        reference.train(False)
        for p in reference.parameters():
            p.requires_grad_(False)
    train_examples = read_jsonl(Path(args.data) / "train.jsonl")
    valid = read_jsonl(Path(args.data) / "valid.jsonl")[: params.train.eval_size]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    # rollouts: each rank of a data-parallel run samples its own noise; the minibatch order
    # is drawn alike on every rank (one process: one generator for both, as always)
    generator = torch.Generator().manual_seed(params.base.seed + 7919 * rank())
    order = generator if world_size() == 1 else torch.Generator().manual_seed(params.base.seed)
    rng = random.Random(params.base.seed)
    # a rerun after a kill continues from the last checkpoint of the same params and inputs
    live_dir = Path(args.live_dir) / run
    checkpoint = for_run(params.base, f"rl/{run}", (run, cfg, params.coconut, params.atp.decode_max_tokens, params.train),
                         paths=[Path(args.data) / "train.jsonl", Path(args.data) / "valid.jsonl", start_dir],
                         dirs=[live_dir])
    checkpoint.track(generator=generator, order=order, rng=rng)
    state = checkpoint.load()
    live = open_live(live_dir, resume=state is not None)
    started = time.time()
    modules, optimizers = {"model": policy.model}, {"optimizer": optimizer}
    if policy.heads is not None:
        modules["heads"] = policy.heads
    first, value_summary = 0, {}
    if state is None:
        before = validate(policy, valid, params)
    if rl.method(run) == "latent_rl":
        if state is None:
            head, pos_weight, pool, heldout, value_summary = start_value_head(policy, cfg, train_examples,
                                                                              params.base.seed)
        else:  # the head comes back from the checkpoint, fitted as it was
            heldout, _, pool = value_split(cfg, train_examples, params.base.seed)
            head = latent_rl.ValueHead(policy.model.config.hidden_size, cfg.latent_rl.hidden,
                                       cfg.latent_rl.dropout).to(policy.device)
        critic_opt = torch.optim.AdamW(head.parameters(), lr=cfg.latent_rl.critic_lr, weight_decay=0.01)
        modules["value_head"], optimizers["critic"] = head, critic_opt
    if state is not None:
        meta = checkpoint.restore(modules, optimizers)
        first, before, value_summary, live.step = meta["step"], meta["before"], meta["value_summary"], meta["live_step"]
        pos_weight = meta.get("pos_weight")
        started -= meta["minutes"] * 60
    if is_main_process():
        print(f"{run}: from {rl.start_method(run)}, validation accuracy {before:.3f}"
              + (f"; reward weights {weights}" if rl.method(run) == "grpo" else ""))
    for step in range(first, cfg.steps):
        if rl.method(run) == "latent_rl":  # one greedy rollout per question: as many as a GRPO step's
            questions = rng.sample(pool, cfg.questions * cfg.group_size)
            logged = latent_rl.latent_rl_step(policy, head, optimizer, critic_opt, questions, cfg, step, pos_weight)
        else:
            questions = rng.sample(train_examples, cfg.questions)
            logged = rl.rl_step(policy, reference, optimizer, questions, cfg, weights, generator, step,
                                params.atp.decode_max_tokens, order)
        for key, value in logged.items():
            live.log_metric(f"rl/{key}", value)
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            accuracy = validate(policy, valid, params)
            if is_main_process():
                live.log_metric("val/accuracy", accuracy)
                print(f"{run} step {step}: validation accuracy {accuracy:.3f}", flush=True)
        live.next_step()
        if is_main_process():
            print(f"{run} step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in logged.items()), flush=True)
        if checkpoint.due(step + 1, step + 1 == cfg.steps):
            checkpoint.save(0, step + 1, modules, optimizers,
                            {"step": step + 1, "before": before, "value_summary": value_summary,
                             "pos_weight": pos_weight if rl.method(run) == "latent_rl" else None,
                             "live_step": live.step, "minutes": (time.time() - started) / 60})
    after = validate(policy, valid, params)
    summary = {"start": rl.start_method(run), "method": rl.method(run), "val_accuracy_before": before,
               "val_accuracy_after": after, "best_val_accuracy": after}
    if rl.method(run) == "latent_rl":  # the head after the loop, on the final model's held-out rollouts
        auc, z, correct = heldout_auc(policy, head, heldout, cfg.max_new_tokens)
        summary.update(value_summary, value_auc_after=auc, value_auc_after_z=z, heldout_correct_after=correct)
        if is_main_process():
            print(f"{run}: value head's held-out ROC-AUC {value_summary['value_auc_before']} -> {auc}")
    summary["train_minutes"] = (time.time() - started) / 60
    live.summary.update(summary)
    live.end()
    if not is_main_process():  # data parallel: rank 0 writes the model
        checkpoint.finish()
        return summary
    if out.exists():
        shutil.rmtree(out)
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    if policy.heads is not None:
        policy.heads.save(out)
        policy.decoder.save_pretrained(out / atp.DECODER_DIR)
        policy.tokenizer.save_pretrained(out / atp.DECODER_DIR)
    if rl.method(run) == "latent_rl":
        save_file({k: v.cpu() for k, v in head.state_dict().items()}, out / latent_rl.VALUE_HEAD_FILE)
    print(f"{run}: validation accuracy {before:.3f} -> {after:.3f}, {summary['train_minutes']:.1f} min")
    checkpoint.finish()
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    # --rl-run: the same, for launchers whose own options --run abbreviates (torchrun's --run-path)
    ap.add_argument("--run", "--rl-run", dest="run", action="append", choices=list(rl.RUNS),
                    help="train only this run (repeatable); default: every one in rl.runs")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--start-root", default=None, help="where the starting models' folders are (default: .)")
    ap.add_argument("--out", default=rl.MODELS_ROOT, help="one model folder per run")
    ap.add_argument("--live-dir", default="reports/train/rl", help="one DVCLive folder per run")
    ap.add_argument("--summary", default="reports/train/rl.json")
    args = ap.parse_args()
    params = load_params(args.params)
    runs = list(dict.fromkeys(args.run or params.rl.runs))
    threads = threads_per_job(params.base.threads, params.rl.jobs)
    train_variants(train_run, runs, args, threads, params.rl.jobs, args.summary)


if __name__ == "__main__":
    main()
