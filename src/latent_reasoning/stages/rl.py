"""Stage `rl`: every run in `rl.runs` (rl.py), each from its starting method's model:

    atp_rl                 atp_vae   the reward with rl.coherence_weight
    atp_rl_no_coherence    atp_vae   coherence weight 0
    atp_rl_coherence_only  atp_vae   no answer labels: format + coherence
    grpo_cot               cot       GRPO in language space
    grpo_coconut           coconut   GRPO on the answer tokens after deterministic thoughts

Each run takes `rl.steps` RL steps of `rl.questions` training questions x `rl.group_size`
rollouts and keeps its last model (validation accuracy before and after is logged).
Writes models/rl/<run>/ (loadable as its starting method is: an ATP run keeps its heads
and the frozen step decoder), DVCLive logs in reports/train/rl/<run> and
reports/train/rl.json."""

import argparse
import copy
import random
import shutil
import time
from pathlib import Path

import torch

from .. import atp, rl
from ..config import load_params
from ..evaluation import evaluate
from ..inference import default_model_dir
from ..modeling import load_checkpoint
from ..parallel import threads_per_job, train_variants
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
    return rl.Policy(kind, model, tokenizer, params.coconut, heads, decoder)


def validate(policy: rl.Policy, valid, params) -> float:
    metrics, _ = evaluate(policy.model, policy.tokenizer, valid, batch_size=params.train.eval_batch_size,
                          max_new_tokens=params.train.eval_max_new_tokens, **rl.inference_kwargs(policy))
    return metrics["accuracy"]


def train_run(run: str, args: argparse.Namespace, threads: int) -> dict:
    params = load_params(args.params)
    cfg = params.rl
    torch.set_num_threads(threads)
    torch.manual_seed(params.base.seed)
    start_dir = default_model_dir(rl.start_method(run))
    if args.start_root:
        start_dir = Path(args.start_root) / start_dir
    out = rl.model_dir(run, args.out)
    policy = load_policy(run, params, start_dir)
    reference = rl.Policy(policy.kind, copy.deepcopy(policy.model), policy.tokenizer, policy.ccfg,
                          copy.deepcopy(policy.heads), None)
    reference.train(False)
    for p in reference.parameters():
        p.requires_grad_(False)
    weights = rl.run_weights(run, cfg)
    train_examples = read_jsonl(Path(args.data) / "train.jsonl")
    valid = read_jsonl(Path(args.data) / "valid.jsonl")[: params.train.eval_size]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    generator = torch.Generator().manual_seed(params.base.seed)
    rng = random.Random(params.base.seed)
    live = open_live(Path(args.live_dir) / run)
    started = time.time()
    before = validate(policy, valid, params)
    print(f"{run}: from {rl.start_method(run)}, validation accuracy {before:.3f}; reward weights {weights}")
    for step in range(cfg.steps):
        questions = rng.sample(train_examples, cfg.questions)
        logged = rl.rl_step(policy, reference, optimizer, questions, cfg, weights, generator, step,
                            params.atp.decode_max_tokens)
        for key, value in logged.items():
            live.log_metric(f"rl/{key}", value)
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            accuracy = validate(policy, valid, params)
            live.log_metric("val/accuracy", accuracy)
            print(f"{run} step {step}: validation accuracy {accuracy:.3f}", flush=True)
        live.next_step()
        print(f"{run} step {step}: reward {logged['reward']:.3f}, correct {logged['correct']:.3f}, "
              f"coherence {logged['coherence']:.3f}, thoughts {logged['thoughts']:.2f}, kl {logged['kl']:.4f}, "
              f"clipped {logged['clip_fraction']:.3f}", flush=True)
    after = validate(policy, valid, params)
    summary = {"start": rl.start_method(run), "val_accuracy_before": before, "val_accuracy_after": after,
               "best_val_accuracy": after, "train_minutes": (time.time() - started) / 60}
    live.summary.update(summary)
    live.end()
    if out.exists():
        shutil.rmtree(out)
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    if policy.heads is not None:
        policy.heads.save(out)
        policy.decoder.save_pretrained(out / atp.DECODER_DIR)
        policy.tokenizer.save_pretrained(out / atp.DECODER_DIR)
    print(f"{run}: validation accuracy {before:.3f} -> {after:.3f}, {summary['train_minutes']:.1f} min")
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", action="append", choices=list(rl.RUNS),
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
