"""Try a trained model on questions of your own: prints each answer, the thoughts it used
and, for ATP-Latent, every group of thoughts read back to text by its step decoder.

    python -m latent_reasoning.ask --method atp_vae "Ava has 12 apples. Ben has 5 more than Ava. How many apples does Ben have?"
    python -m latent_reasoning.ask --method coconut --file questions.txt     # one question per line

--method is any method the pipeline trains (cot, nocot, coconut and its variants, the
atp_* variants); --model points at another saved model of that method."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import atp
from .config import load_params
from .devices import autocast
from .evaluation import evaluate
from .inference import load_method
from .schema import Example


def ask(method, questions: list[str], *, max_new_tokens: int, decode_max_tokens: int, c_thought: int) -> list[dict]:
    """One dict per question: answer, output text, thoughts used, decoded groups (ATP)."""
    examples = [Example(q.strip(), (), "") for q in questions]
    _, predictions = evaluate(method.model, method.tokenizer, examples, batch_size=64, max_new_tokens=max_new_tokens,
                              keep_thoughts=method.decoder is not None, **method.run)
    results = [{"question": p["question"], "answer": p["predicted"], "output": p["output"], "thoughts": p["thoughts"]}
               for p in predictions]
    if method.decoder is not None:  # every question's step groups read back in one batched call
        decoded = atp.read_back(method.decoder, method.tokenizer, [p["thought_inputs"] for p in predictions],
                                c_thought, decode_max_tokens)
        for row, texts in zip(results, decoded):
            row["decoded_steps"] = texts
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("question", nargs="*", help="questions (or use --file)")
    ap.add_argument("--method", required=True)
    ap.add_argument("--file", help="a text file, one question per line")
    ap.add_argument("--model", help="the model folder (default: where the pipeline saves the method's)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    questions = list(args.question)
    if args.file:
        questions += [line for line in Path(args.file).read_text().splitlines() if line.strip()]
    if not questions:
        ap.error("give a question, or --file with one question per line")
    params = load_params(args.params)
    torch.set_num_threads(params.base.threads)
    method = load_method(args.method, params, args.model)
    with autocast(method.model.device, params.evaluate.bf16):
        rows = ask(method, questions, max_new_tokens=params.evaluate.max_new_tokens,
                   decode_max_tokens=params.atp.decode_max_tokens, c_thought=params.coconut.c_thought)
    for row in rows:
        print(f"Q: {row['question']}")
        print(f"answer: {row['answer']}    (thoughts used: {row['thoughts']})")
        for g, text in enumerate(row.get("decoded_steps", [])):
            print(f"  step group {g + 1} reads: {text.strip() or '(nothing)'}")
        print(f"output: {row['output'].strip()}")
        print()


if __name__ == "__main__":
    main()
