"""Answer extraction and batched evaluation of a model on a set of examples."""

from __future__ import annotations

import time

from .formats import encode_prompt
from .generation import generate
from .schema import Example, same_answer
from .tokenizer import EOT


def extract_answer(text: str) -> str | None:
    """The text after the last `###`, stripped, commas removed; None when there is no `###`."""
    if "###" not in text:
        return None
    answer = text.rsplit("###", 1)[1].strip().replace(",", "")
    return answer or None


def answers_match(predicted: str | None, gold: str) -> bool:
    return predicted is not None and same_answer(predicted, gold)


def accuracy_by(predictions: list[dict], key) -> dict | None:
    """Accuracy per group: `key(prediction)` names its group (None: no group). Groups in
    sorted order, names as strings; None when there are fewer than two groups."""
    groups = {}
    for p in predictions:
        name = key(p)
        if name is not None:
            groups.setdefault(name, []).append(p["correct"])
    if len(groups) < 2:
        return None
    return {str(name): {"accuracy": sum(hits) / len(hits), "n": len(hits)} for name, hits in sorted(groups.items())}


def evaluate(model, tokenizer, examples: list[Example], *, batch_size: int, max_new_tokens: int,
             prompt_fn=encode_prompt, n_latents: int | None = None, thought_fn=None, stop_fn=None,
             group: int = 1, keep_thoughts: bool = False) -> tuple[dict, list[dict]]:
    """Greedy answers for every example. Returns (metrics, predictions).

    With `n_latents`, each prompt (ending in <bot>) gets that many continuous thoughts,
    then <eot>, before the answer. `tokens` counts what the model produces after the
    question: continuous thoughts plus generated tokens (eos excluded), as the Coconut
    paper counts them; prompt tokens such as <pause> are not counted. `thought_fn` maps
    each thought's hidden state to the next input embedding (default: fed back as is), so
    an analysis can replace the thoughts and measure what they carried. `stop_fn` and
    `group` let each row end its thinking early (see generation.generate); the tokens then
    count the thoughts each row used. With `keep_thoughts`, each prediction also holds
    `thought_inputs`, the (n, hidden) tensor of what its thoughts fed back (not JSON: for
    a caller to read and drop)."""
    model.eval()
    predictions = []
    started = time.time()
    # longest prompts first: rows of a batch have similar lengths, so less padding
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].question))
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start: start + batch_size]]
        prompts = [prompt_fn(tokenizer, ex) for ex in chunk]
        out = generate(model, prompts, max_new_tokens=max_new_tokens,
                       eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                       n_latents=None if n_latents is None else [n_latents] * len(prompts),
                       eot_id=tokenizer.convert_tokens_to_ids(EOT), thought_fn=thought_fn,
                       stop_fn=stop_fn, group=group, return_thoughts=True)
        for j, (i, ex, new) in enumerate(zip(order[start: start + batch_size], chunk, out.tokens)):
            text = tokenizer.decode(new, skip_special_tokens=False)
            predicted = extract_answer(text)
            predictions.append({
                "index": i, "question": ex.question, "gold": ex.answer, "predicted": predicted,
                "correct": answers_match(predicted, ex.answer), "tokens": len(new) + out.n_thoughts[j],
                "thoughts": out.n_thoughts[j], "output": text,
                **({"meta": ex.meta} if ex.meta else {}),
                **({"thought_inputs": out.inputs[j]} if keep_thoughts else {}),
            })
    seconds = time.time() - started
    predictions.sort(key=lambda p: p["index"])
    n = len(predictions)
    metrics = {
        "accuracy": sum(p["correct"] for p in predictions) / max(1, n),
        "tokens": sum(p["tokens"] for p in predictions) / max(1, n),
        "n": n,
        "examples_per_s": n / max(seconds, 1e-9),
    }
    return metrics, predictions
