"""How an example becomes a training sequence, per method.

    cot:    question \\n step \\n ... step \\n ### answer <eos>
    nocot:  question \\n ### answer <eos>

The prompt (question and newline) is what generation starts from; the loss is on the
rest only. Prompt and target are tokenized separately and concatenated, so the prompt
tokens at training time are exactly the prompt tokens at generation time.
"""

from __future__ import annotations

import torch

from .schema import Example

IGNORE = -100  # label of positions without loss


def prompt_text(ex: Example) -> str:
    return ex.question + "\n"


def target_text(ex: Example, method: str) -> str:
    if method == "cot":
        return "".join(step + "\n" for step in ex.steps) + "### " + ex.answer
    if method == "nocot":
        return "### " + ex.answer
    raise ValueError(f"no sequence format for method {method!r}")


def encode_prompt(tokenizer, ex: Example) -> list[int]:
    # the tokenizer's own specials (e.g. Llama's <bos>) go in front of the question only
    return tokenizer(prompt_text(ex))["input_ids"]


def encode_example(tokenizer, ex: Example, method: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one training sequence."""
    prompt = encode_prompt(tokenizer, ex)
    target = tokenizer(target_text(ex, method), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + target, [IGNORE] * len(prompt) + target


def encode_examples(tokenizer, examples: list[Example], method: str) -> list[tuple[list[int], list[int]]]:
    """encode_example for many examples, tokenizing in two batched calls (fast)."""
    prompts = tokenizer([prompt_text(ex) for ex in examples])["input_ids"]
    targets = tokenizer([target_text(ex, method) for ex in examples], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id]
    return [(p + t + eos, [IGNORE] * len(p) + t + eos) for p, t in zip(prompts, targets)]


def collate(sequences: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of (input_ids, labels) for teacher-forced training."""
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(sequences):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        attention_mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
