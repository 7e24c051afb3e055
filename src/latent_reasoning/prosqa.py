"""ProsQA-style graph reasoning (the Coconut paper's search task), generated and loaded.

A problem is a random DAG over made-up concept names with one entity at its root:

    facts     "Tom is a wumpus." "Every wumpus is a yumpus." ... (every edge, shuffled)
    question  "Is Tom a zhorpus or a brimpus?"  (exactly one of the two is reachable)
    steps     one shortest path: "Tom is a wumpus." "Every wumpus is a zhorpus."
    answer    "Tom is a zhorpus."

What makes one written path fail, kept at this machine's scale: the root reaches branches
that lead nowhere near the target (distractors), several routes may reach it (a greedy
walk can commit to a longer one), and the wrong option sits in a part of the graph that
has edges of its own, some into the reachable part, so it is named in the facts just as
often. Built in two groups: the concepts the root reaches, and the others (the wrong
option among them); edges run forward within a group and from the second group into the
first, never back, so the root reaches none of the second group by construction (and
breadth-first search checks it).

Loaders: the released ProsQA JSON (question, steps, answer, idx_to_symbol, edges, root,
target, neg_target) and ProntoQA as the Coconut repo converts it (question, steps,
answer). A malformed item is a DataError naming the file and the item. Every example
carries meta.task "prosqa": its steps are sentences, not formulas (schema.py).

The paper's ProsQA (Hao et al. 2024, Table 1 and its appendix): about 23 nodes, 36
edges, shortest path 3.8 on average, 1.6 shortest paths per problem, 3-6 steps.
"""

from __future__ import annotations

import json
import random
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .schema import DataError, Example

PEOPLE = ("Tom", "Alex", "Sam", "Max", "Eva", "Jack", "Rex", "Fae", "Wren", "Polly", "Stella", "Sally",
          "Bob", "Davis", "Lempus")
_ONSETS = ("b", "br", "d", "f", "g", "gr", "j", "k", "l", "m", "n", "p", "r", "s", "st", "sh", "t", "v",
           "w", "y", "z", "zh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("mpus", "rpus", "ffin", "nk", "mp", "ster", "ble", "dox", "lio", "rn")


def concept_names(n: int, seed: int = 0) -> list[str]:
    """n distinct made-up words (onset + vowel + coda, "wumpus"-like), seeded."""
    rng = random.Random(seed)
    words = sorted({o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS})
    if n > len(words):
        raise ValueError(f"prosqa: at most {len(words)} concept names, asked for {n}")
    return rng.sample(words, n)


@dataclass(frozen=True)
class ProsqaConfig:
    # the graph pipeline's sizes (prosqa/params.yaml); 10-14 concepts and 3-5 steps were the
    # first guess, too hard for CoT-SFT at this machine's scale (docs/prosqa.md)
    concepts: tuple = (7, 9)  # concepts per graph (the entity is one more node)
    steps: tuple = (3, 4)  # the shortest path's length (edges) from the entity to the answer
    window: int = 3  # a concept's children are among the next `window` of its group
    max_children: int = 2
    cross_edges: int = 2  # edges from the unreachable group into the reachable one
    vocabulary: int = 120  # the made-up concept names all graphs draw from

    def __post_init__(self):
        lo, hi = self.steps
        if not 1 <= lo <= hi:
            raise ValueError(f"prosqa.steps must be [lo, hi] with 1 <= lo <= hi, got {list(self.steps)}")
        if self.concepts[0] < hi + 3 or self.concepts[0] > self.concepts[1]:
            raise ValueError(f"prosqa.concepts {list(self.concepts)}: needs lo <= hi and room for a path of "
                             f"{hi} steps and the other group (lo >= {hi + 3})")
        if self.window < 1 or self.max_children < 1 or self.cross_edges < 0:
            raise ValueError("prosqa: window and max_children must be >= 1, cross_edges >= 0")


# ------------------------------------------------------------------------- graphs

def distances(n: int, edges, root: int) -> list[int | None]:
    """Breadth-first distance (edges) from root to every node; None: unreachable."""
    children = [[] for _ in range(n)]
    for a, b in edges:
        children[a].append(b)
    dist: list[int | None] = [None] * n
    dist[root] = 0
    queue = deque([root])
    while queue:
        a = queue.popleft()
        for b in children[a]:
            if dist[b] is None:
                dist[b] = dist[a] + 1
                queue.append(b)
    return dist


def count_shortest_paths(n: int, edges, root: int, target: int) -> int:
    dist = distances(n, edges, root)
    ways = [0] * n
    ways[root] = 1
    for a in sorted((v for v in range(n) if dist[v] is not None), key=lambda v: dist[v]):
        for x, b in edges:
            if x == a and dist[b] == dist[a] + 1:
                ways[b] += ways[a]
    return ways[target]


def random_walk_accuracy(meta: dict) -> float:
    """The expected accuracy of a reader that looks edges up but does not search: from the
    entity it follows a uniformly random edge until it stands on one of the two options
    (its answer), or at a dead end, where it guesses between them. Exact, over the DAG.
    What a written path that never plans scores on this problem."""
    options = {meta["target"]: 1.0, meta["neg_target"]: 0.0}
    children = {}
    for a, b in meta["edges"]:
        children.setdefault(a, []).append(b)
    memo = {}

    def p(v):
        if v in options:
            return options[v]
        if v not in memo:
            kids = children.get(v, [])
            memo[v] = sum(map(p, kids)) / len(kids) if kids else 0.5
        return memo[v]

    return p(meta["root"])


def out_degree_guess(meta: dict) -> float:
    """A shortcut that needs no path at all: answer the option with fewer outgoing edges
    (the wrong option sits in the group that feeds edges into the reachable one); 0.5 on a
    tie. A No-CoT model can learn it from the facts' counts."""
    out = lambda v: sum(a == v for a, _ in meta["edges"])
    right, wrong = out(meta["target"]), out(meta["neg_target"])
    return 1.0 if right < wrong else 0.5 if right == wrong else 0.0


def render_edge(symbols: list[str], a: int, b: int, root: int) -> str:
    return f"{symbols[a]} is a {symbols[b]}." if a == root else f"Every {symbols[a]} is a {symbols[b]}."


def to_example(symbols: list[str], edges, root: int, target: int, neg_target: int, path: list[int],
               rng: random.Random | None = None, order: bool | None = None) -> Example:
    """The problem as text: every edge as a fact (shuffled with rng), the question with its
    two options (the right one first when `order`), the path as steps."""
    facts = [render_edge(symbols, a, b, root) for a, b in edges]
    if rng is not None:
        rng.shuffle(facts)
    first, second = (target, neg_target) if order or order is None else (neg_target, target)
    question = " ".join(facts) + f" Is {symbols[root]} a {symbols[first]} or a {symbols[second]}?"
    steps = tuple(render_edge(symbols, a, b, root) for a, b in zip(path, path[1:]))
    meta = {"task": "prosqa", "idx_to_symbol": list(symbols), "edges": [list(e) for e in edges], "root": root, "target": target,
            "neg_target": neg_target, "path": list(path)}
    return Example(question, steps, f"{symbols[root]} is a {symbols[target]}.", meta)


def make_problem(rng: random.Random, cfg: ProsqaConfig, vocabulary: list[str]) -> Example | None:
    """One random problem, or None when this draw has no target at the wanted distance
    (the caller draws again)."""
    n = rng.randint(*cfg.concepts)
    n_other = max(3, n // 3)
    reach = list(range(1, n - n_other + 1))  # may be reached from the root (node 0)
    other = list(range(n - n_other + 1, n + 1))  # never: the wrong option is among them
    symbols = [rng.choice(PEOPLE)] + rng.sample(vocabulary, n)
    edges = set()
    for j in rng.sample(reach[:3], rng.randint(1, 2)):
        edges.add((0, j))
    for group in (reach, other):
        for k, a in enumerate(group):
            later = group[k + 1: k + 1 + cfg.window]
            for b in rng.sample(later, min(len(later), rng.randint(1, cfg.max_children))):
                edges.add((a, b))
    for _ in range(cfg.cross_edges):
        edges.add((rng.choice(other), rng.choice(reach)))
    edges = sorted(edges)
    dist = distances(n + 1, edges, 0)
    lo, hi = cfg.steps
    targets = [v for v in reach if dist[v] is not None and lo <= dist[v] <= hi]
    has_parent = {b for _, b in edges}
    wrong = [v for v in other if v in has_parent and dist[v] is None]
    if not targets or not wrong:
        return None
    target, neg_target = rng.choice(targets), rng.choice(wrong)
    # one shortest path, chosen at random among them: walk back through parents one closer
    path = [target]
    while path[-1] != 0:
        parents = [a for a, b in edges if b == path[-1] and dist[a] == dist[path[-1]] - 1]
        path.append(rng.choice(parents))
    if not {v for v in reach if dist[v] is not None} - set(path):
        return None  # no branch off the path: one line to follow, no search
    return to_example(symbols, edges, 0, target, neg_target, path[::-1], rng, rng.random() < 0.5)


def signature(ex: Example) -> tuple:
    """What identifies a problem's graph (names included): no two splits share one."""
    m = ex.meta
    return (tuple(m["idx_to_symbol"]), tuple(map(tuple, m["edges"])), m["root"], m["target"], m["neg_target"])


def generate_splits(seed: int, cfg: ProsqaConfig, sizes: dict[str, int]) -> dict[str, list[Example]]:
    """{split: problems}, seeded; every problem's graph is new (across all splits)."""
    rng = random.Random(seed)
    vocabulary = concept_names(cfg.vocabulary, seed)
    seen, out = set(), {}
    for split, size in sizes.items():
        problems = []
        while len(problems) < size:
            ex = make_problem(rng, cfg, vocabulary)
            if ex is None or signature(ex) in seen:
                continue
            seen.add(signature(ex))
            problems.append(ex)
        out[split] = problems
    return out


def statistics(examples: list[Example]) -> dict:
    """The numbers the paper gives for ProsQA, for these problems."""
    def mean(xs):
        return round(sum(xs) / len(xs), 2)

    nodes = [len(ex.meta["idx_to_symbol"]) for ex in examples]
    edges = [len(ex.meta["edges"]) for ex in examples]
    steps = [len(ex.steps) for ex in examples]
    ways = [count_shortest_paths(len(ex.meta["idx_to_symbol"]), ex.meta["edges"], ex.meta["root"],
                                 ex.meta["target"]) for ex in examples]
    return {"problems": len(examples), "nodes": mean(nodes), "edges": mean(edges), "shortest_path": mean(steps),
            "shortest_paths": mean(ways), "more_than_one_route": mean([w > 1 for w in ways]),
            "steps": [min(steps), max(steps)]}


# ------------------------------------------------------------------------- loaders

def _item(where: str, row, keys) -> None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in keys:
        if key not in row:
            raise DataError(f"{where}: missing field '{key}'")
    if not isinstance(row["question"], str) or not row["question"].strip():
        raise DataError(f"{where}: 'question' must be a non-empty string")
    if not isinstance(row["answer"], str) or not row["answer"].strip():
        raise DataError(f"{where}: 'answer' must be a non-empty string")
    if not isinstance(row["steps"], list) or not all(isinstance(s, str) and s.strip() for s in row["steps"]):
        raise DataError(f"{where}: 'steps' must be a list of non-empty strings")


def _rows(path: str | Path) -> list:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: broken JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of items, got {type(rows).__name__}")
    return rows


def load_prosqa(path: str | Path) -> list[Example]:
    """The released ProsQA JSON: a list of items with the graph. Checked: fields and types,
    every edge and the root/target/neg_target within idx_to_symbol, the target reachable
    from the root and the negative target not."""
    examples = []
    for i, row in enumerate(_rows(path)):
        where = f"{path}: item {i}"
        _item(where, row, ("question", "steps", "answer", "idx_to_symbol", "edges", "root", "target",
                           "neg_target"))
        symbols = row["idx_to_symbol"]
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            raise DataError(f"{where}: 'idx_to_symbol' must be a non-empty list of strings")
        n = len(symbols)
        for key in ("root", "target", "neg_target"):
            v = row[key]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < n:
                raise DataError(f"{where}: '{key}' must be a node index in 0..{n - 1}, got {v!r}")
        edges = row["edges"]
        if not isinstance(edges, list) or not all(
                isinstance(e, list) and len(e) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                            and 0 <= x < n for x in e) for e in edges):
            raise DataError(f"{where}: 'edges' must be a list of [from, to] node indices in 0..{n - 1}")
        dist = distances(n, edges, row["root"])
        if dist[row["target"]] is None or dist[row["neg_target"]] is not None:
            raise DataError(f"{where}: the target must be reachable from the root and the negative target not")
        meta = {"task": "prosqa", **{k: row[k] for k in ("idx_to_symbol", "edges", "root", "target", "neg_target")}}
        examples.append(Example(row["question"].strip(), tuple(s.strip() for s in row["steps"]),
                                row["answer"].strip(), meta))
    return examples


def load_prontoqa(path: str | Path) -> list[Example]:
    """ProntoQA as the Coconut repo converts it: a list of {question, steps, answer}."""
    examples = []
    for i, row in enumerate(_rows(path)):
        _item(f"{path}: item {i}", row, ("question", "steps", "answer"))
        examples.append(Example(row["question"].strip(), tuple(s.strip() for s in row["steps"]),
                                row["answer"].strip(), {"task": "prosqa"}))  # sentence steps (schema.py)
    return examples


# ------------------------------------------------------------------------- analyses

PATH_CLASSES = ("correct_path", "longer_path", "hallucination", "wrong_target", "no_path")
# one step: "Every wumpus is a yumpus." (subject, object) / "Tom is a wumpus." (the entity's)
SENTENCE_RE = re.compile(r"(?:Every )?([A-Za-z]+) is an? ([A-Za-z]+)\.")


def parse_steps(text: str, symbols: list[str], root: int) -> list[tuple[int, int]] | None:
    """The edges a generated reasoning text states, in order ("X is a p." / "Every p is a
    q."), as node indices; None when a sentence names something that is not a node of
    this graph (a made-up concept) or is not of that form."""
    index = {s: i for i, s in enumerate(symbols)}
    edges = []
    for sentence in (s.strip() for s in text.split(".")):
        if not sentence:
            continue
        m = SENTENCE_RE.fullmatch(sentence + ".")
        if m is None or m.group(1) not in index or m.group(2) not in index:
            return None
        a, b = index[m.group(1)], index[m.group(2)]
        if sentence.startswith("Every ") == (a == root):  # "Every <entity>" or "<concept> is a": malformed
            return None
        edges.append((a, b))
    return edges


def path_class(reasoning: str, meta: dict) -> str:
    """The Coconut paper's classes of a generated reasoning path (its Figure on ProsQA):
    correct_path (a shortest path from the root to the target, every step an edge of the
    graph), longer_path (a valid path to the target, not a shortest one), hallucination
    (a step that is not an edge of the graph, or names a concept not in it), wrong_target
    (a valid path that ends at another node), no_path (no step at all)."""
    symbols, root, target = meta["idx_to_symbol"], meta["root"], meta["target"]
    stated = parse_steps(reasoning, symbols, root)
    if stated is None:
        return "hallucination"
    if not stated:
        return "no_path"
    edges = {tuple(e) for e in meta["edges"]}
    if any(e not in edges for e in stated) or stated[0][0] != root or any(
            a[1] != b[0] for a, b in zip(stated, stated[1:])):
        return "hallucination"  # a made-up edge, or steps that do not chain from the root
    if stated[-1][1] != target:
        return "wrong_target"
    shortest = distances(len(symbols), meta["edges"], root)[target]
    return "correct_path" if len(stated) == shortest else "longer_path"
