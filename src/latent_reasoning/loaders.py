"""Load the data sources the project knows into `schema.Example` records.

Formats (``fmt``):

* ``"icot"``  -- the iCoT text format GSM8k-Aug ships, one example per line:
  ``question||<<a=b>> <<c=d>> #### answer``. Between ``||`` and ``####`` there may be
  only ``<<...>>`` formulas and whitespace; zero formulas is allowed.
* ``"gsm8k"`` -- original GSM8K jsonl ``{"question", "answer"}``, where the answer is a
  worked solution: the steps are its ``<<expr=result>>`` calculator notes, the answer is
  the text after the last ``####``.
* ``"json"``  -- a ``.json`` list of objects or a ``.jsonl`` file with one object per line,
  each with ``question``, ``steps`` or ``cot`` (a list of formulas, or one string of
  formulas separated by spaces) and ``answer`` (string or number). Files written by
  ``schema.write_jsonl`` are of this kind.
* ``"hub"``   -- a Hugging Face dataset id, loaded with ``datasets.load_dataset``; rows as
  for ``"json"``.
* ``"prosqa"``, ``"prontoqa"`` -- the graph task's JSON files (the released ProsQA, with its
  graph; ProntoQA as the Coconut repo converts it), read by prosqa.py: sentence steps.
* ``"auto"``  -- ``.txt`` is icot; ``.json``/``.jsonl`` is json or gsm8k, told apart by the
  first row that decodes to an object; a source that is not an existing path is a hub id.

Every malformed row raises `DataError` as ``location: reason`` (location is ``file:line``,
1-based; ``id[split]:row`` for hub rows). With ``skip_invalid=True`` such rows are
skipped instead and listed in `LoadResult.skipped`. Blank lines are not rows. Problems
with a whole file (missing file, a ``.json`` file whose structure is broken) always raise.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .schema import DataError, Example, same_answer, step_result, validate_row

FORMATS = ("auto", "icot", "gsm8k", "json", "hub", "prosqa", "prontoqa")
FILE_EXTENSIONS = (".txt", ".json", ".jsonl")

# one <<...>> chunk; whether it is a proper formula is schema.STEP_RE's call (validate_row)
_FORMULA_RE = re.compile(r"<<[^<>]*>>")


@dataclass
class LoadResult:
    examples: list[Example]
    # (location "file:line", reason) of each row skipped under skip_invalid
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_examples(source: str, fmt: str = "auto", split: str | None = None,
                  skip_invalid: bool = False, limit: int | None = None) -> LoadResult:
    """Load `source` (a file path or a hub dataset id) as Examples.

    `split` is only used for hub datasets (default "train"). `limit` keeps the first
    `limit` valid examples and stops reading there.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    source = os.fspath(source)
    if fmt in ("prosqa", "prontoqa"):  # the graph task's files (prosqa.py): sentence steps
        from . import prosqa

        examples = (prosqa.load_prosqa if fmt == "prosqa" else prosqa.load_prontoqa)(source)
        return LoadResult(examples if limit is None else examples[:limit], [])
    if fmt == "auto":
        fmt = _detect_format(source)
    if fmt == "hub":
        rows, convert = _hub_rows(source, split or "train"), _json_example
    else:
        path = _existing_file(source)
        if fmt == "icot":
            rows, convert = _text_lines(path), _icot_example
        elif fmt == "gsm8k":
            rows, convert = _jsonl_rows(path), _gsm8k_example
        else:
            rows, convert = _json_file_rows(path), _json_example

    result = LoadResult([], [])
    if limit == 0:
        return result
    try:
        for where, raw in rows:  # file-level errors raise from here, never skipped
            try:
                if isinstance(raw, DataError):
                    raise raw
                example = convert(raw, where)
            except DataError as e:
                if not skip_invalid:
                    raise
                result.skipped.append((where, _reason(e, where)))
                continue
            result.examples.append(example)
            if limit is not None and len(result.examples) >= limit:
                break
    finally:
        rows.close()  # closes the file when stopping early
    return result


def dataset_stats(examples: list[Example]) -> dict:
    """Summary numbers of a list of examples, as a JSON-able dict."""
    n = len(examples)
    n_steps = Counter(len(ex.steps) for ex in examples)
    stats = {
        "count": n,
        "steps_histogram": {str(k): n_steps[k] for k in sorted(n_steps)},
        "mean_steps": sum(len(ex.steps) for ex in examples) / n if n else 0.0,
        "mean_question_words": sum(len(ex.question.split()) for ex in examples) / n if n else 0.0,
        "no_steps": n_steps.get(0, 0),
        "last_step_mismatch": sum(
            1 for ex in examples if ex.steps and (ex.meta or {}).get("task") != "prosqa"
            and not same_answer(step_result(ex.steps[-1]), ex.answer)
        ),
    }
    variations = Counter((ex.meta or {}).get("variation", "none") for ex in examples)
    if set(variations) != {"none"} and variations:  # what the generator did to each problem
        stats["variations"] = dict(sorted(variations.items()))
    return stats


# ---------------------------------------------------------------- choosing a format

def _detect_format(source: str) -> str:
    path = Path(source)
    if not path.exists():
        if path.suffix.lower() in FILE_EXTENSIONS:  # meant as a file, not a hub id
            raise DataError(f"{source}: no such file")
        return "hub"
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "icot"
    if suffix in (".json", ".jsonl"):
        return _sniff_json(_existing_file(source))
    raise DataError(f"{source}: cannot tell the format from the extension {suffix!r}; "
                    f"use a {'/'.join(FILE_EXTENSIONS)} file or pass fmt= one of "
                    f"{', '.join(FORMATS[1:])}")


def _sniff_json(path: Path) -> str:
    """json or gsm8k, judged by the first row that decodes to an object."""
    for where, row in _json_file_rows(path):
        if not isinstance(row, dict):
            continue
        if "steps" in row or "cot" in row:
            return "json"
        if "question" in row and "answer" in row:
            return "gsm8k"
        raise DataError(f"{where}: cannot tell the format: the row has neither 'steps'/'cot' "
                        f"nor 'question' and 'answer'; pass fmt='json' or fmt='gsm8k'")
    return "json"  # no usable row: the json loader reports each bad line (or loads nothing)


def _existing_file(source: str) -> Path:
    path = Path(source)
    if not path.exists():
        raise DataError(f"{source}: no such file")
    if not path.is_file():
        raise DataError(f"{source}: not a file")
    return path


# ---------------------------------------------------------------- reading rows
# Readers yield (location, raw row); a row that cannot even be decoded is yielded as a
# DataError so that load_examples can skip it like any other bad row.

def _text_lines(path: Path):
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield where, DataError(f"{where}: not UTF-8 text ({e.reason})")
                continue
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if line.strip():
                yield where, line.strip()


def _jsonl_rows(path: Path):
    for where, line in _text_lines(path):
        if isinstance(line, DataError):
            yield where, line
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as e:
            yield where, DataError(f"{where}: broken JSON ({e.msg})")


def _json_file_rows(path: Path):
    """A .json file holding a list (or JSON lines), or a .jsonl file."""
    if path.suffix.lower() == ".json" and _first_char(path) == "[":
        yield from _json_array_rows(path)
    else:
        yield from _jsonl_rows(path)


def _first_char(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    return head[:1]


def _json_array_rows(path: Path):
    """Elements of a top-level JSON list, each with the line it starts on."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from None
    decoder, space = json.JSONDecoder(), re.compile(r"\s*")
    pos = space.match(text).end() + 1  # past "["
    pos = space.match(text, pos).end()
    closed = text.startswith("]", pos)
    if closed:
        pos += 1
    while not closed:
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: broken JSON ({e.msg})") from None
        yield f"{path}:{text.count(chr(10), 0, pos) + 1}", row
        pos = space.match(text, end).end()
        if text.startswith("]", pos):
            closed, pos = True, pos + 1
        elif text.startswith(",", pos):
            pos = space.match(text, pos + 1).end()
        else:
            raise DataError(f"{path}:{text.count(chr(10), 0, pos) + 1}: broken JSON "
                            f"(expected ',' or ']' after a list element)")
    if text[pos:].strip():
        raise DataError(f"{path}:{text.count(chr(10), 0, pos) + 1}: broken JSON (extra data after the list)")


def _hub_rows(source: str, split: str):
    try:
        import datasets

        ds = datasets.load_dataset(source, split=split)
    except Exception as e:  # offline, unknown id, bad split, datasets missing, ...
        raise DataError(
            f"{source}: the hub dataset could not be loaded ({type(e).__name__}: {e}); "
            f"download it and give a local file path (.txt, .json or .jsonl) instead"
        ) from e
    for i, row in enumerate(ds, 1):
        yield f"{source}[{split}]:{i}", row


# ---------------------------------------------------------------- one row -> Example

def _icot_example(line: str, where: str) -> Example:
    question, sep, rest = line.partition("||")
    if not sep:
        raise DataError(f"{where}: no '||' between the question and the steps")
    cot, sep, answer = rest.rpartition("####")
    if not sep:
        raise DataError(f"{where}: no '####' before the answer")
    row = {"question": question, "steps": _formulas(cot, where), "answer": answer}
    return validate_row(row, where)


def _gsm8k_example(row, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("question", "answer"):
        if key not in row:
            raise DataError(f"{where}: missing field '{key}'")
    solution = row["answer"]
    if not isinstance(solution, str):
        raise DataError(f"{where}: 'answer' must be a solution string ending in '#### answer'")
    body, sep, answer = solution.rpartition("####")
    if not sep:
        raise DataError(f"{where}: the solution has no '#### answer' line")
    return validate_row({"question": row["question"], "steps": _FORMULA_RE.findall(body),
                         "answer": answer}, where)


def _json_example(row, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "steps" in row and "cot" in row:
        raise DataError(f"{where}: has both 'steps' and 'cot'; give one")
    key = "steps" if "steps" in row else "cot"
    if key not in row:
        raise DataError(f"{where}: missing field 'steps' (or 'cot')")
    steps = row[key]
    if isinstance(steps, str):
        steps = _formulas(steps, where)
    elif not isinstance(steps, list):
        raise DataError(f"{where}: '{key}' must be a list of step strings or one string of formulas")
    fixed = {k: v for k, v in row.items() if k != "cot"}
    fixed["steps"] = steps
    return validate_row(fixed, where)


def _formulas(text: str, where: str) -> list[str]:
    """The <<...>> chunks of a formulas-only string; any other text is an error."""
    rest = _FORMULA_RE.sub(" ", text).strip()
    if rest:
        shown = rest if len(rest) <= 40 else rest[:37] + "..."
        raise DataError(f"{where}: text outside <<...>> formulas in the steps: {shown!r}")
    return _FORMULA_RE.findall(text)


def _reason(error: DataError, where: str) -> str:
    message = str(error)
    return message[len(where) + 2:] if message.startswith(where + ": ") else message
