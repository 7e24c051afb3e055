"""A few training steps on a tiny model and generated data, run by test_data_parallel.py
in one process or under `torchrun --nproc_per_node N` (accelerate over gloo on CPU):

    python tests/dp_worker.py OUT --method sft|coconut --batch B --steps K

`--batch` is the global batch. Rank 0 saves the final weights to OUT/model.safetensors. Every
rank records in OUT/wrote_<rank>.json the files under OUT it opened for writing, whether it
saved and whether it validated (what the test checks: rank 0 alone)."""

import argparse
import builtins
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--method", choices=["sft", "coconut"], required=True)
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
    if args.method == "sft":
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
