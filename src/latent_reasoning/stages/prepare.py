"""Stage `prepare`: write every split in our schema to data/prepared/, with statistics.

Default source: the built-in generator (train, valid and the five test sets). With
data.source = prosqa, the graph task's generator (prosqa.py: train, valid, test_prosqa). With
data.source = files, each entry of data.files (train, valid, test_<name>) is loaded
through loaders.py; a missing valid split is carved off the end of train.
"""

import argparse
import json
from pathlib import Path

from ..config import load_params
from .. import prosqa
from ..generator import SplitSizes, generate_splits
from ..loaders import dataset_stats, load_examples
from ..schema import write_jsonl


def load_files(data) -> tuple[dict, dict]:
    splits, skipped = {}, {}
    for split, source in data.files.items():
        if split not in ("train", "valid") and not split.startswith("test_"):
            raise ValueError(f"data.files.{split}: split names are train, valid and test_<name>")
        # a hub dataset's splits are named train / valid / test (as GSM8k-Aug's copies are)
        hub_split = "test" if split.startswith("test_") else split
        result = load_examples(source, fmt=data.format, skip_invalid=data.skip_invalid, split=hub_split)
        splits[split] = result.examples
        if result.skipped:
            skipped[split] = [{"where": w, "reason": r} for w, r in result.skipped]
            print(f"{split}: skipped {len(result.skipped)} malformed rows (listed in stats.json)")
    if "valid" not in splits:
        train = splits["train"]
        if len(train) <= data.valid_size:
            raise ValueError(f"data.files.train has {len(train)} rows, too few to carve off valid_size={data.valid_size}")
        splits["train"], splits["valid"] = train[: -data.valid_size], train[-data.valid_size:]
    return splits, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/prepared")
    args = ap.parse_args()
    params = load_params(args.params)
    data = params.data
    if data.source == "generator":
        sizes = SplitSizes(data.train_size, data.valid_size, data.test_size)
        splits = generate_splits(params.base.seed, data.generator, sizes, train_steps=data.train_steps,
                                 multiarith_steps=data.multiarith_steps, longer_steps=data.longer_steps,
                                 hard_factor=data.hard_factor)
        skipped = {}
    elif data.source == "prosqa":
        splits = prosqa.generate_splits(params.base.seed, data.prosqa, {
            "train": data.train_size, "valid": data.valid_size, "test_prosqa": data.test_size})
        skipped = {}
    else:
        splits, skipped = load_files(data)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jsonl"):  # a split dropped from params must not linger
        old.unlink()
    stats = {}
    for name, examples in splits.items():
        write_jsonl(out / f"{name}.jsonl", examples)
        stats[name] = dataset_stats(examples)
        print(f"{name}: {stats[name]['count']} examples, steps {stats[name]['steps_histogram']}")
    if skipped:
        stats["skipped"] = skipped
    if data.source == "prosqa":  # the graph statistics the Coconut paper gives for ProsQA
        stats["graphs"] = {name: prosqa.statistics(examples) for name, examples in splits.items()}
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    main()
