"""Stage `tokenizer`: build our tokenizer from the training split, or extend a pretrained
model's own with the special tokens; save it to models/tokenizer/ and report, per split,
how many tokens a sequence takes and how many pieces fell out of the vocabulary."""

import argparse
import json
from pathlib import Path

from transformers import AutoTokenizer

from ..config import load_params
from ..formats import prompt_text, target_text
from ..schema import read_jsonl
from ..tokenizer import add_latent_tokens, build_tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--out", default="models/tokenizer")
    args = ap.parse_args()
    params = load_params(args.params)
    data = Path(args.data)
    splits = {p.stem: read_jsonl(p) for p in sorted(data.glob("*.jsonl"))}
    if "train" not in splits:
        raise FileNotFoundError(f"no {data}/train.jsonl: run the `prepare` stage first")

    def full_text(ex):
        return prompt_text(ex) + target_text(ex, "cot")

    if params.model.name_or_path:
        try:
            tokenizer = AutoTokenizer.from_pretrained(params.model.name_or_path)
        except OSError as e:
            raise OSError(f"model.name_or_path={params.model.name_or_path!r}: could not load its tokenizer "
                          f"(no network here: give a local directory). {e}") from None
        add_latent_tokens(tokenizer)
    else:
        tokenizer = build_tokenizer(full_text(ex) for ex in splits["train"])
    tokenizer.save_pretrained(args.out)

    report = {"vocab_size": len(tokenizer)}
    for name, examples in splits.items():
        ids = [tokenizer(full_text(ex), add_special_tokens=False)["input_ids"] for ex in examples]
        report[name] = {
            "mean_cot_tokens": sum(map(len, ids)) / len(ids),
            "max_cot_tokens": max(map(len, ids)),
            "unknown_tokens": sum(row.count(tokenizer.unk_token_id) for row in ids)
            if tokenizer.unk_token_id is not None else 0,
        }
    print(json.dumps(report, indent=1))
    (Path(args.out) / "coverage.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
