"""The one record schema every data source is turned into.

    {"question": str, "steps": [str, ...], "answer": str}

Each step is a formula in the GSM8k-Aug style, ``<<16-3-4=9>>``, optionally after a
label that says what it computes (the generator's steps can name the person:
``Kim <<17-8=9>>``; real GSM8k-Aug rows have none). In a row of the graph task
(``meta.task: "prosqa"``, prosqa.py) a step is one sentence instead ("Every wumpus is a
yumpus."). Structure is checked strictly (types, non-empty question and answer, every
step one ``<<lhs=rhs>>`` formula with at most a label before it, or one line);
content is taken as the data has it: real GSM8k-Aug has rows with no
steps and rows whose last step disagrees with the answer, and those load (the
statistics count them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

# one formula: "<<" expression "=" result ">>", after an optional label ("Kim "), nothing
# else around it
STEP_RE = re.compile(r"^(?:[^<>=\n]+ )?<<([^<>=]+)=([^<>=]+)>>$")


class DataError(ValueError):
    """A malformed data row or file; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    question: str
    steps: tuple[str, ...]
    answer: str
    # optional provenance, e.g. {"variation": "reordered"}; not part of the schema
    meta: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        row = {"question": self.question, "steps": list(self.steps), "answer": self.answer}
        if self.meta:
            row["meta"] = self.meta
        return row


_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_number(text: str) -> Decimal | None:
    """The exact value of a plain number ("1,000", "-3", ".5", "1e3"), else None."""
    text = text.replace(",", "").strip()
    return Decimal(text) if _NUMBER_RE.fullmatch(text) else None


def same_answer(a: str, b: str) -> bool:
    """Equal as numbers when both parse as numbers (commas removed, so "5.0" == "5"), else
    as stripped text with commas removed."""
    x, y = parse_number(a), parse_number(b)
    if x is not None and y is not None:
        return x == y
    return a.replace(",", "").strip() == b.replace(",", "").strip()


def step_result(step: str) -> str:
    """The right-hand side of a step's ``<<lhs=rhs>>`` formula."""
    match = STEP_RE.match(step.strip())
    if match is None:
        raise DataError(f"step {step!r} is not a <<expression=result>> formula")
    return match.group(2).strip()


def validate_row(row, where: str) -> Example:
    """Check one decoded row against the schema; raise DataError naming `where`."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("question", "steps", "answer"):
        if key not in row:
            raise DataError(f"{where}: missing field '{key}'")
    question, steps, answer = row["question"], row["steps"], row["answer"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: 'question' must be a non-empty string")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{where}: 'answer' must be a non-empty string")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise DataError(f"{where}: 'steps' must be a list of strings")
    meta = row.get("meta") or {}
    sentences = isinstance(meta, dict) and meta.get("task") == "prosqa"
    for i, step in enumerate(steps):
        if sentences:
            if not step.strip() or "\n" in step:
                raise DataError(f"{where}: step {i} {step!r} must be one non-empty line")
        elif not STEP_RE.match(step.strip()):
            raise DataError(f"{where}: step {i} {step!r} is not a <<expression=result>> formula "
                            "(a label before it is allowed, nothing after it)")
    return Example(question.strip(), tuple(s.strip() for s in steps), answer.strip(), meta)


def write_jsonl(path: str | Path, examples) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_json()) + "\n")


def read_jsonl(path: str | Path) -> list[Example]:
    """Read a file in our schema (as `prepare` writes it); any bad line is an error."""
    path = Path(path)
    examples = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: broken JSON ({e.msg})") from None
            examples.append(validate_row(row, f"{path}:{lineno}"))
    return examples
