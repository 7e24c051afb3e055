"""Compare the two sides scripts/code_identity.sh wrote (record: reports/experiments/code_identity/)."""

import filecmp
import json
import sys
from pathlib import Path

from safetensors.torch import load_file

T = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/trials/identity")
old, new = T / "old", T / "new"
bad = 0
for f in sorted((old / "prepared").glob("*")):
    same = filecmp.cmp(f, new / "prepared" / f.name, shallow=False)
    bad += not same
    print(f"prepared/{f.name}: {'identical' if same else 'DIFFERENT'}")
for f in sorted(old.glob("models/**/*.safetensors")):
    a, b = load_file(f), load_file(new / f.relative_to(old))
    same = a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    bad += not same
    print(f"{f.relative_to(old)}: {'bit-identical' if same else 'DIFFERENT'}")
def strip(d):  # examples_per_s is a timing, not a result
    if isinstance(d, dict):
        return {k: strip(v) for k, v in d.items() if k != "examples_per_s"}
    return [strip(x) for x in d] if isinstance(d, list) else d


for f in sorted(old.glob("eval/**/*")):
    if f.is_file():
        if f.name == "metrics.json":
            same = strip(json.loads(f.read_text())) == strip(json.loads((new / f.relative_to(old)).read_text()))
        else:
            same = filecmp.cmp(f, new / f.relative_to(old), shallow=False)
        bad += not same
        print(f"{f.relative_to(old)}: {'identical' if same else 'DIFFERENT'}"
              + (" (apart from examples_per_s)" if f.name == "metrics.json" and same else ""))
print("ALL SAME" if not bad else f"{bad} DIFFERENT")
