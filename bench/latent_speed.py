"""Speed of the shared latent core, measured in one run on the same model and questions.

1. Generation with continuous thoughts: the batched, KV-cached `generate` against how
   the Coconut reference generates: batch 1, thoughts with a KV cache, then the whole
   sequence recomputed for every new token. Fixed work: 6 thoughts and 16 new tokens per
   question, no early stop. With `--batched-dtype bfloat16` the batched loop runs a bf16
   copy of the model while the reference stays in fp32 (each loop at its faster dtype
   on a CPU with bf16 matmuls; the pipeline itself evaluates in fp32).
2. Training: one Coconut step (latent_forward + backward + AdamW, batch 32, 6 thoughts)
   and one ATP-Latent step (the same, through the latent head, plus the step decoder on
   every group and the stop head; atp.atp_loss) against a plain teacher-forced step on
   the same token sequences.
3. ATP-Latent generation with stop decisions (up to 6 thoughts, a stop head asked at each
   group of 2): batched against one row at a time, with the same heads.

    python bench/latent_speed.py [--n-layer 4 --n-embd 128] [--questions 64] [--batched-dtype bfloat16]
"""

import argparse
import copy
import random
import time

import torch

from latent_reasoning import atp, coconut
from latent_reasoning.formats import prompt_text
from latent_reasoning.generation import generate
from latent_reasoning.latent import latent_forward
from latent_reasoning.tokenizer import BOT, EOT
from setup import bench_setup, median
from transformers import DynamicCache

THOUGHTS, NEW_TOKENS = 6, 16


@torch.no_grad()
def reference_generate(model, prompt: list[int], eot_id: int) -> list[int]:
    """How the Coconut reference generates, at batch 1: its forward computes the thoughts
    with a KV cache (one pass each) and <eot>, which gives the first new token; then every
    further token recomputes the whole sequence without a cache."""
    embed = model.get_input_embeddings()
    embeds = embed(torch.tensor([prompt]))
    cache = DynamicCache()
    out = model(inputs_embeds=embeds, cache=cache, use_cache=True, output_hidden_states=True)
    for _ in range(THOUGHTS):
        h = out.hidden_states[-1][:, -1:]
        embeds = torch.cat([embeds, h], dim=1)
        out = model(inputs_embeds=h, cache=cache, use_cache=True, output_hidden_states=True)
    eot = embed(torch.tensor([[eot_id]]))
    embeds = torch.cat([embeds, eot], dim=1)
    tokens = [model(inputs_embeds=eot, cache=cache, use_cache=True).logits[0, -1].argmax().item()]
    for _ in range(NEW_TOKENS - 1):
        embeds = torch.cat([embeds, embed(torch.tensor([[tokens[-1]]]))], dim=1)
        tokens.append(model(inputs_embeds=embeds).logits[0, -1].argmax().item())
    return tokens


def timed(fn, repeats=1):
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--reference-questions", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds for generation")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batched-dtype", choices=["float32", "bfloat16"], default="float32",
                    help="dtype of the model the batched loop runs (the reference always runs fp32)")
    args = ap.parse_args()
    data, tok, model = bench_setup(args.threads, max(args.questions, 32), args.n_layer, args.n_embd)
    model.eval()
    bot, eot = tok.convert_tokens_to_ids(BOT), tok.convert_tokens_to_ids(EOT)
    questions = data["test_gsm"][: args.questions]
    prompts = [tok(prompt_text(ex))["input_ids"] + [bot] for ex in questions]
    print(f"model: GPT-2 {args.n_layer} layers x {args.n_embd}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {args.threads} threads")

    # --- generation -------------------------------------------------------------------
    batched_model = model if args.batched_dtype == "float32" else \
        copy.deepcopy(model).to(getattr(torch, args.batched_dtype))

    def batched():
        return generate(batched_model, prompts, max_new_tokens=NEW_TOKENS, eos_id=-1, pad_id=tok.pad_token_id,
                        n_latents=[THOUGHTS] * len(prompts), eot_id=eot)

    ref_prompts = prompts[: args.reference_questions]
    batched()  # warm-up
    # interleaved rounds, so that drift in machine speed (large on a shared VM) hits both
    # loops alike; the medians are reported
    fast_rounds, slow_rounds = [], []
    for _ in range(args.rounds):
        fast_rounds.append(len(prompts) / timed(batched))
        slow_rounds.append(len(ref_prompts) / timed(lambda: [reference_generate(model, p, eot) for p in ref_prompts]))
    fast, slow = median(fast_rounds), median(slow_rounds)
    # the two must agree (same greedy tokens) for the comparison to mean anything; in bf16
    # some rows may differ from the fp32 reference
    agree = sum(a == b for a, b in zip(batched(), [reference_generate(model, p, eot) for p in ref_prompts]))
    print(f"generation ({THOUGHTS} thoughts + {NEW_TOKENS} tokens per question):")
    print(f"  batched KV-cached ({len(prompts)} questions/batch, {args.batched_dtype}): {fast:8.1f} examples/s")
    print(f"  reference (batch 1, recompute per token): {slow:7.1f} examples/s  ({1000 / slow:.0f} ms/example)")
    print(f"  speed-up: {fast / slow:.1f}x   (same outputs: {agree} of {len(ref_prompts)} rows; medians of {args.rounds} interleaved rounds, "
          f"per-round ratios {', '.join(f'{f / s:.1f}' for f, s in zip(fast_rounds, slow_rounds))})")
    # work per question, in positions pushed through the model: the batched loop computes
    # each position once (prompts padded to the longest); the reference recomputes the
    # whole sequence for every token after the first. Their ratio is the speed-up that equal
    # per-position cost would give; beating it is what batching buys.
    width = max(len(p) for p in prompts)
    fast_positions = width + THOUGHTS + NEW_TOKENS
    slow_positions = sum(len(p) + THOUGHTS + 1 +  # cached: prompt, thoughts, <eot>
                         sum(len(p) + THOUGHTS + 1 + j for j in range(1, NEW_TOKENS))  # recomputed
                         for p in prompts) / len(prompts)
    print(f"  positions computed per question: batched {fast_positions}, reference {slow_positions:.0f} "
          f"({slow_positions / fast_positions:.1f}x as many)")

    # --- training step ----------------------------------------------------------------
    cfg = coconut.CoconutConfig()
    batch_examples = data["train"][:32]
    rng = random.Random(0)
    latent_batch = coconut.make_batch(tok, batch_examples, "coconut", cfg.final_stage, cfg, rng)
    plain = {"input_ids": latent_batch.input_ids, "attention_mask": latent_batch.attention_mask,
             "labels": latent_batch.labels}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(loss_fn):
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def plain_step():
        step(lambda: model(**plain).loss)

    def latent_step():
        step(lambda: latent_forward(model, latent_batch).loss)

    # ATP-Latent: the same model thinking through its heads, and a step decoder
    torch.manual_seed(0)
    heads = atp.AtpHeads(model.config.hidden_size)
    decoder = copy.deepcopy(model)
    atp_batch = atp.make_batch(tok, batch_examples, "atp_vae", cfg.final_stage, cfg)
    atp_opt = torch.optim.AdamW([*model.parameters(), *heads.parameters(), *decoder.parameters()], lr=1e-4)

    def atp_step():
        loss = atp.atp_loss(model, heads, decoder, atp_batch, cfg, kl_weight=0.001).loss
        loss.backward()
        atp_opt.step()
        atp_opt.zero_grad(set_to_none=True)

    for fn in (plain_step, latent_step, atp_step):
        fn()  # warm-up
    t_plain, t_latent, t_atp = [], [], []
    for _ in range(args.train_steps):  # interleaved, so drift in machine load hits all alike
        t_plain.append(timed(plain_step))
        t_latent.append(timed(latent_step))
        t_atp.append(timed(atp_step))
    p, l, a = median(t_plain), median(t_latent), median(t_atp)
    print(f"training step (batch 32, {int(latent_batch.n_latents.max())} thoughts, "
          f"{latent_batch.input_ids.shape[1]} columns), median of {args.train_steps}:")
    print(f"  plain teacher-forced: {1000 * p:7.1f} ms")
    print(f"  Coconut (cached passes, full backprop): {1000 * l:7.1f} ms   ratio to plain: {l / p:.2f}x")
    print(f"  ATP-Latent (heads, {atp_batch.groups} decoder groups per row, stop head): {1000 * a:7.1f} ms   "
          f"ratio to plain: {a / p:.2f}x, to Coconut: {a / l:.2f}x   "
          f"({int(atp_batch.latent.n_latents.sum())} thoughts in the batch, adaptive)")

    # --- ATP-Latent generation with stop decisions --------------------------------------
    model.eval()
    heads.eval()
    run = atp.inference_kwargs(heads, "atp_vae", cfg)
    kwargs = dict(max_new_tokens=NEW_TOKENS, eos_id=-1, pad_id=tok.pad_token_id, eot_id=eot,
                  thought_fn=run["thought_fn"], stop_fn=run["stop_fn"], group=run["group"], return_thoughts=True)
    with torch.no_grad():
        def atp_batched():
            return generate(model, prompts, n_latents=[cfg.max_thoughts] * len(prompts), **kwargs)

        def atp_alone():
            return [generate(model, [q], n_latents=[cfg.max_thoughts], **kwargs) for q in ref_prompts]

        atp_batched()  # warm-up
        fast_rounds, slow_rounds = [], []
        for _ in range(args.rounds):
            fast_rounds.append(len(prompts) / timed(atp_batched))
            slow_rounds.append(len(ref_prompts) / timed(atp_alone))
        together, alone = atp_batched(), atp_alone()
    same = sum(together.tokens[i] == g.tokens[0] and together.n_thoughts[i] == g.n_thoughts[0]
               for i, g in enumerate(alone))
    fast, slow = median(fast_rounds), median(slow_rounds)
    used = sum(together.n_thoughts) / len(prompts)
    print(f"ATP-Latent generation with stop decisions (up to {cfg.max_thoughts} thoughts, "
          f"{used:.1f} used on average by these untrained heads, + {NEW_TOKENS} tokens):")
    print(f"  batched ({len(prompts)} questions/batch): {fast:8.1f} examples/s")
    print(f"  one row at a time (KV-cached): {slow:7.1f} examples/s")
    print(f"  speed-up: {fast / slow:.1f}x   (same tokens and stops: {same} of {len(ref_prompts)} rows; "
          f"medians of {args.rounds} interleaved rounds)")


if __name__ == "__main__":
    main()
