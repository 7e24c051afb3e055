"""A seeded generator of arithmetic word problems in the GSM8k-Aug style.

Every problem is a chain of people, each holding some number of one kind of object:

    Ava has 12 apples. Ben has 5 more than Ava. Cal has 3 times as many as Ben.
    How many apples does Cal have?
    steps: <<12+5=17>>  <<17*3=51>>   answer: 51

The first person's count is given; every later person's count is the previous one's
changed by one operation (+, -, *, exact /), which is one reasoning step. A question may
instead ask for the last two people's total (one more step, `<<a+b=c>>`).
Every step is a correct formula and the answer is the last step's result. Steps are bare
formulas, as GSM8k-Aug's; `step_names` writes each after the person it computes
(`Ben <<12+5=17>>`) and `question_first` puts the question before the facts: both were
trials to make a question about an intermediate person learnable, and neither did
(reports/experiments/data_design/).

The language is deliberately plain: a small model trained from scratch in minutes
has to learn the arithmetic and which number to copy; prose variety would only cost
tokens. The test sets mirror the four benchmarks of the ATP-Latent paper:

    gsm         in distribution (the GSM8K role)
    gsm_hard    the same test problems, given numbers enlarged (how GSM-Hard was made)
    svamp       the test problems, each with two or three variations combined: facts
                reordered, an irrelevant sentence added, the question asking for the
                last two people's total (or, configurable, about an intermediate person)
    multiarith  short 2-3 step problems
    longer      more steps than any training problem (length generalisation)

Training sees what the hard sets ask, but rarely and alone, so that they are out of
distribution yet learnable: a share (`large_prob`) of training problems is enlarged as
gsm_hard's are, and a share (`variation_prob`) carries exactly one of svamp's variations
(never two: svamp combines them). A model trained on the plain template alone never met a
number above value_max nor a reordered fact, and scored near zero on both sets.

A problem's *chain* is (start value, ops and operands, together?). No training problem
shares its start value and first two operations with a test or validation problem, so
training never computes a held-out chain or any 2+ step prefix of one: the model cannot
have memorised a test chain (a 2-step chain space is small enough to be covered by 100k
examples, so disjoint question texts alone would not ensure that).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .schema import Example

NAMES = (
    "Ava Ben Cal Dan Eve Fay Gus Hal Ivy Jon Kim Leo Mia Ned Oli Pam Quinn Ray Sam Tia "
    "Uma Vic Wes Xia Yan Zoe Amy Bob Cara Dev"
).split()
OBJECTS = "apples pears books coins cards marbles pens stamps shells cookies eggs toys".split()
FRACTIONS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth"}


@dataclass(frozen=True)
class GeneratorConfig:
    value_max: int = 30  # every quantity (given or computed) stays in 0..value_max
    start_min: int = 2
    add_max: int = 9  # operands of + and - are 1..add_max
    mul_max: int = 3  # factors and divisors are 2..mul_max (divisors at most 5)
    together_prob: float = 0.0  # chance the last step sums the last two people
    # training problems whose given numbers are enlarged by a factor in data.hard_factor,
    # as every gsm_hard problem is: the test's numbers are known tokens, though rare ones
    large_prob: float = 0.2
    # training problems carrying exactly one SVAMP variation; svamp combines them
    variation_prob: float = 0.3
    # training problems carrying two variations at once (svamp's pairs, rare in training;
    # its three-variation combinations stay unseen). 0: svamp's every combination unseen
    pair_prob: float = 0.0
    # which variations (of VARIATIONS below): facts reordered, an irrelevant sentence, the
    # question asking for the last two people's total, or asking about an intermediate person
    variations: tuple = ("reordered", "distractor", "together")
    # each step after the name of the person it computes ("Cal <<17*3=51>>"); false (the
    # default, as params.yaml's): bare formulas, as GSM8k-Aug's
    step_names: bool = False
    # the question before the facts ("How many shells does Fay have? Ned has 30 shells.
    # ..."): every fact can then see, as it is read, whether it is about the person asked
    question_first: bool = False
    # how `reordered` permutes the facts: "move" takes one fact out and puts it elsewhere
    # (SVAMP's small change of sentence order); "shuffle" is any order but the original
    reorder: str = "move"

    @property
    def text_format(self) -> dict:
        """The `realize`/`vary` keywords that set how a problem is written."""
        return dict(step_names=self.step_names, question_first=self.question_first)

    @property
    def vary_format(self) -> dict:
        """`text_format` plus the keywords that set how `vary` applies a variation."""
        return dict(self.text_format, reorder=self.reorder)

    def __post_init__(self):
        if not (0 < self.start_min <= self.value_max):
            raise ValueError(f"generator: need 0 < start_min <= value_max, got {self}")
        if self.add_max < 1 or not (2 <= self.mul_max <= 9):
            raise ValueError(f"generator: need add_max >= 1 and 2 <= mul_max <= 9, got {self}")
        for name in ("together_prob", "large_prob", "variation_prob", "pair_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"generator.{name} must be in [0, 1], got {getattr(self, name)}")
        unknown = [v for v in self.variations if v not in VARIATIONS]
        if unknown or len(set(self.variations)) < 2 or len(set(self.variations)) < len(self.variations):
            raise ValueError(f"generator.variations must be two or more distinct of {VARIATIONS}, "
                             f"got {list(self.variations)}")
        if self.reorder not in ("move", "shuffle"):
            raise ValueError(f"generator.reorder must be 'move' or 'shuffle', got {self.reorder!r}")
        if self.large_prob + self.variation_prob + self.pair_prob > 1:
            raise ValueError(f"generator: large_prob + variation_prob + pair_prob must be <= 1, got "
                             f"{self.large_prob} + {self.variation_prob} + {self.pair_prob}")


@dataclass(frozen=True)
class Problem:
    """The structure of one problem; `realize` turns it into text."""

    start: int
    ops: tuple[tuple[str, int], ...]  # (op, operand) per person after the first
    together: bool  # one more step: total of the last two people
    names: tuple[str, ...]
    obj: str

    @property
    def chain(self) -> tuple:
        return (self.start, self.ops, self.together)

    @property
    def n_steps(self) -> int:
        return len(self.ops) + int(self.together)

    def values(self) -> list[int]:
        vals = [self.start]
        for op, b in self.ops:
            vals.append(apply(op, vals[-1], b))
        return vals

    def scaled(self, factor: int) -> "Problem":
        """The same problem with its given numbers enlarged (start and +/- operands times
        `factor`). Every quantity scales by `factor`, so exact divisions stay exact."""
        ops = tuple((op, b * factor if op in "+-" else b) for op, b in self.ops)
        return Problem(self.start * factor, ops, self.together, self.names, self.obj)


def apply(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        assert a % b == 0, (a, b)
        return a // b
    raise ValueError(f"unknown op {op!r}")


def sample_problem(rng: random.Random, n_steps: int, cfg: GeneratorConfig) -> Problem:
    """A random problem with exactly `n_steps` steps, every quantity in 0..value_max."""
    together = n_steps >= 2 and rng.random() < cfg.together_prob
    n_ops = n_steps - int(together)
    while True:
        value = rng.randint(cfg.start_min, cfg.value_max)
        start, ops, ok = value, [], True
        for _ in range(n_ops):
            choices = []
            if value < cfg.value_max:
                choices.append(("+", rng.randint(1, min(cfg.add_max, cfg.value_max - value))))
            if value >= 2:
                choices.append(("-", rng.randint(1, min(cfg.add_max, value - 1))))
            factors = [f for f in range(2, cfg.mul_max + 1) if value * f <= cfg.value_max and value > 0]
            if factors:
                choices.append(("*", rng.choice(factors)))
            divisors = [d for d in range(2, min(cfg.mul_max, 5) + 1) if value % d == 0 and value > 0]
            if divisors:
                choices.append(("/", rng.choice(divisors)))
            if not choices:
                ok = False
                break
            op, b = rng.choice(choices)
            ops.append((op, b))
            value = apply(op, value, b)
        if not ok:
            continue
        if together and value + (start if n_ops == 1 else _before_last(start, ops)) > cfg.value_max:
            continue
        names = tuple(rng.sample(NAMES, n_ops + 1))
        return Problem(start, tuple(ops), together, names, rng.choice(OBJECTS))


def _before_last(start: int, ops: list) -> int:
    """The second-to-last person's count."""
    value = start
    for op, b in ops[:-1]:
        value = apply(op, value, b)
    return value


def relation_sentence(name: str, prev: str, op: str, b: int) -> str:
    if op == "+":
        return f"{name} has {b} more than {prev}."
    if op == "-":
        return f"{name} has {b} fewer than {prev}."
    if op == "*":
        return f"{name} has {b} times as many as {prev}."
    return f"{name} has {FRACTIONS[b]} as many as {prev}."


def realize(p: Problem, *, order: list[int] | None = None, distractor: str | None = None,
            ask: int | None = None, meta: dict | None = None, step_names: bool = True,
            question_first: bool = False) -> Example:
    """Render a problem as text, steps and answer.

    order: permutation of the fact sentences (SVAMP-style reordering; the steps keep
    their dependency order). distractor: an irrelevant sentence inserted before the
    question. ask: index of the person the question is about (default: the last one,
    or the last two's total when `p.together`). step_names: each step after the name of
    the person it computes. question_first: the question before the facts."""
    vals = p.values()
    facts = [f"{p.names[0]} has {p.start} {p.obj}."]
    for i, (op, b) in enumerate(p.ops):
        facts.append(relation_sentence(p.names[i + 1], p.names[i], op, b))
    def label(who: str) -> str:
        return f"{who} " if step_names else ""

    steps = []
    for i, (op, b) in enumerate(p.ops):
        steps.append(f"{label(p.names[i + 1])}<<{vals[i]}{op}{b}={vals[i + 1]}>>")
    if ask is None and p.together:
        a, b = vals[-2], vals[-1]
        steps.append(f"{label(p.names[-2] + ' and ' + p.names[-1])}<<{a}+{b}={a + b}>>")
        question = f"How many {p.obj} do {p.names[-2]} and {p.names[-1]} have together?"
        answer = a + b
    else:
        k = len(p.names) - 1 if ask is None else ask
        steps = steps[:k]
        question = f"How many {p.obj} does {p.names[k]} have?"
        answer = vals[k]
    if order is not None:
        facts = [facts[i] for i in order]
    if distractor:
        facts.append(distractor)
    text = " ".join([question] + facts if question_first else facts + [question])
    return Example(text, tuple(steps), str(answer), dict(meta or {}))


def _head(p: Problem) -> tuple:
    """Start value and first two operations: a training problem may share none with a held-out
    one, so no training problem computes any held-out chain or any 2+ step prefix of one."""
    return (p.start, p.ops[:2])


def generate_unique(rng, n, steps_range, cfg, taken: set, forbidden_heads: set = frozenset()):
    """`n` problems with distinct chains, none in `taken` (to which they are added) and none
    whose head is in `forbidden_heads`."""
    out = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 10_000:
            raise ValueError(
                f"generator: could only make {len(out)} of {n} distinct problems with "
                f"{steps_range} steps; widen value_max/add_max or ask for fewer"
            )
        p = sample_problem(rng, rng.randint(*steps_range), cfg)
        if p.chain in taken or _head(p) in forbidden_heads:
            continue
        taken.add(p.chain)
        out.append(p)
    return out


# SVAMP-style variations. The first two keep the computation and change the text (SVAMP's
# structural invariance); the last two change what is asked (its question sensitivity):
# the last two people's total is one more step, an intermediate person's count is fewer.
VARIATIONS = ("reordered", "distractor", "together", "other_quantity")
QUESTION_VARIATIONS = ("together", "other_quantity")  # at most one of these per problem


def vary(rng: random.Random, p: Problem, kinds: tuple[str, ...], meta: dict | None = None,
         step_names: bool = True, question_first: bool = False, reorder: str = "move") -> Example:
    """The problem with each SVAMP-style variation in `kinds` applied (any combination with
    at most one question variation): facts reordered (`reorder`: one fact moved, or
    shuffled), an irrelevant sentence added, the question about the last two people's total
    or about an earlier person."""
    assert sum(k in QUESTION_VARIATIONS for k in kinds) <= 1, kinds
    order = distractor = ask = None
    if "together" in kinds:
        p = replace(p, together=True)
    if "reordered" in kinds:
        order = list(range(len(p.ops) + 1))
        if reorder == "move":
            i = rng.randrange(len(order))
            j = rng.choice([k for k in range(len(order)) if k != i])
            order.insert(j, order.pop(i))
        else:
            while order == sorted(order):
                rng.shuffle(order)
    if "distractor" in kinds:
        other = rng.choice([n for n in NAMES if n not in p.names])
        obj = rng.choice([o for o in OBJECTS if o != p.obj])
        distractor = f"{other} has {rng.randint(2, 20)} {obj}."
    if "other_quantity" in kinds:
        ask = rng.choice(_askable(p))
    return realize(p, order=order, distractor=distractor, ask=ask,
                   meta={**(meta or {}), "variation": "+".join(kinds)}, step_names=step_names,
                   question_first=question_first)


def applicable(p: Problem, kind: str, max_steps: int, value_max: int) -> bool:
    """Whether a variation fits the problem: a total adds a step, so it needs a chain short
    enough to stay within `max_steps` (the training maximum: a longer problem is the
    `longer` set's test, not svamp's) and a total within `value_max` (a number of the
    range every other step computes in, as `together_prob`'s totals are); an intermediate
    person needs one to ask about."""
    if kind == "together":
        vals = p.values()
        return (not p.together and len(p.ops) + 1 <= max_steps
                and vals[-2] + vals[-1] <= value_max)
    if kind == "other_quantity":
        return bool(_askable(p))
    return True


def _askable(p: Problem) -> list[int]:
    """People the question can ask about instead of the default: anyone before the end of
    the chain (or, when the question asks for a total, the last person alone)."""
    return list(range(1, len(p.ops))) + ([len(p.ops)] if p.together else [])


def svamp_combinations(variations: tuple) -> list[tuple]:
    """svamp's combinations of the configured variations: every pair and every larger set,
    never one alone (training has each alone), at most one question variation each."""
    out = []
    for mask in range(1, 2 ** len(variations)):
        combo = tuple(v for i, v in enumerate(variations) if mask >> i & 1)
        if len(combo) >= 2 and sum(k in QUESTION_VARIATIONS for k in combo) <= 1:
            out.append(combo)
    return sorted(out, key=lambda c: (len(c), c))


def svamp_variant(rng: random.Random, p: Problem, cfg: "GeneratorConfig", max_steps: int) -> Example:
    """A test problem with two or more variations combined, chosen at random among those
    that fit it."""
    combos = [c for c in svamp_combinations(cfg.variations)
              if all(applicable(p, k, max_steps, cfg.value_max) for k in c)]
    return vary(rng, p, rng.choice(combos), **cfg.vary_format)


def generate_train(rng, n, steps_range, cfg: GeneratorConfig, forbidden_heads: set,
                   hard_factor=(10, 12)) -> list[Example]:
    """`n` training problems with distinct chains, none computing a held-out head. A share
    `cfg.large_prob` is enlarged (as gsm_hard is), a share `cfg.variation_prob` carries one
    variation, a share `cfg.pair_prob` two; the rest are plain. The head checked is that of
    the chain as written."""
    taken, out, attempts = set(), [], 0
    pairs = [c for c in svamp_combinations(cfg.variations) if len(c) == 2]
    while len(out) < n:
        # the kind first, then a problem of it: kinds that are rejected more often (plain
        # chains collide more) keep their share
        u = rng.random()
        if u < cfg.large_prob:
            kind = "enlarged"
        elif u < cfg.large_prob + cfg.variation_prob:
            kind = "varied"
        elif u < cfg.large_prob + cfg.variation_prob + cfg.pair_prob:
            kind = "pair"
        else:
            kind = "plain"
        # each variation (or pair) an equal share: drawn first, then a problem it fits
        variation = None
        if kind == "varied":
            variation = (rng.choice(cfg.variations),)
        elif kind == "pair":
            variation = rng.choice(pairs)
        while True:
            attempts += 1
            if attempts > 50 * n + 10_000:
                raise ValueError(f"generator: could only make {len(out)} of {n} distinct training problems "
                                 f"with {steps_range} steps; widen value_max/add_max or ask for fewer")
            base = sample_problem(rng, rng.randint(*steps_range), cfg)
            p = base.scaled(rng.randint(*hard_factor)) if kind == "enlarged" else base
            fits = variation is None or all(applicable(p, k, steps_range[1], cfg.value_max)
                                            for k in variation)
            if fits and p.chain not in taken and _head(p) not in forbidden_heads and _head(base) not in forbidden_heads:
                break
        taken.add(p.chain)
        if kind == "enlarged":
            out.append(realize(p, meta={"variation": "enlarged"}, **cfg.text_format))
        elif variation:
            out.append(vary(rng, p, variation, **cfg.vary_format))
        else:
            out.append(realize(p, **cfg.text_format))
    return out


@dataclass(frozen=True)
class SplitSizes:
    train: int = 60_000
    valid: int = 300
    test: int = 500


def generate_splits(seed: int, cfg: GeneratorConfig, sizes: SplitSizes,
                    train_steps=(2, 4), multiarith_steps=(2, 3), longer_steps=(5, 6),
                    hard_factor=(10, 12)) -> dict[str, list[Example]]:
    """All splits, deterministic given the seed. Test and validation problems are drawn
    first; training then avoids their chains and their chains' prefixes."""
    rng = random.Random(seed)
    taken: set = set()
    test = generate_unique(rng, sizes.test, train_steps, cfg, taken)
    valid = generate_unique(rng, sizes.valid, train_steps, cfg, taken)
    multiarith = generate_unique(rng, sizes.test, multiarith_steps, cfg, taken)
    longer = generate_unique(rng, sizes.test, longer_steps, cfg, taken)
    hard = [p.scaled(rng.randint(*hard_factor)) for p in test]
    held_out = {_head(p) for p in test + valid + multiarith + longer + hard}
    train = generate_train(rng, sizes.train, train_steps, cfg, held_out, hard_factor)

    svamp = [svamp_variant(rng, p, cfg, train_steps[1]) for p in test]
    fmt = cfg.text_format
    return {
        "train": train,
        "valid": [realize(p, **fmt) for p in valid],
        "test_gsm": [realize(p, **fmt) for p in test],
        "test_gsm_hard": [realize(p, meta={"variation": "enlarged"}, **fmt) for p in hard],
        "test_svamp": svamp,
        "test_multiarith": [realize(p, **fmt) for p in multiarith],
        "test_longer": [realize(p, **fmt) for p in longer],
    }
