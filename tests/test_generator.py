import re

import pytest

from latent_reasoning.generator import (QUESTION_VARIATIONS, VARIATIONS, GeneratorConfig, SplitSizes,
                                        generate_splits, realize, sample_problem, svamp_combinations, vary)
from latent_reasoning.schema import STEP_RE, step_result

SIZES = SplitSizes(train=3000, valid=100, test=200)


@pytest.fixture(scope="module")
def splits():
    return generate_splits(0, GeneratorConfig(), SIZES)


def formula(step: str) -> str:
    """The <<lhs=rhs>> part of a step (the generator's steps start with a person's name)."""
    return step[step.index("<<"):]


def evaluate_formula(step: str) -> tuple[int, int]:
    lhs, rhs = formula(step)[2:-2].split("=")
    a, op, b = re.fullmatch(r"(\d+)([-+*/])(\d+)", lhs).groups()
    a, b = int(a), int(b)
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
    return value, int(rhs)


def test_every_step_is_a_correct_formula_and_the_answer_is_the_last_result(splits):
    for name, examples in splits.items():
        for ex in examples:
            assert ex.steps, (name, ex)
            for step in ex.steps:
                assert STEP_RE.match(step)
                value, result = evaluate_formula(step)
                assert value == result, (name, step)
                assert value >= 0 and value == int(value)
            assert step_result(ex.steps[-1]) == ex.answer, (name, ex)


def test_each_step_uses_the_previous_result_or_a_number_in_the_question(splits):
    for ex in splits["test_gsm"]:
        numbers = set(re.findall(r"\d+", ex.question))
        results = set()
        for step in ex.steps:
            operands = re.findall(r"\d+", formula(step)[2:-2].split("=")[0])
            for x in operands:
                assert x in numbers or x in results or x in {"2", "3", "4", "5"}, (ex.question, step)
            results.add(step_result(step))


def test_deterministic_by_seed():
    a = generate_splits(7, GeneratorConfig(), SplitSizes(300, 20, 30))
    b = generate_splits(7, GeneratorConfig(), SplitSizes(300, 20, 30))
    c = generate_splits(8, GeneratorConfig(), SplitSizes(300, 20, 30))
    assert a == b
    assert a["train"] != c["train"]


def test_splits_are_disjoint_by_question(splits):
    train = {ex.question for ex in splits["train"]}
    for name in ("valid", "test_gsm", "test_multiarith", "test_longer", "test_gsm_hard", "test_svamp"):
        assert not train & {ex.question for ex in splits[name]}, name
    assert not {ex.question for ex in splits["valid"]} & {ex.question for ex in splits["test_gsm"]}


def test_train_avoids_test_chains_and_their_prefixes(splits):
    # a chain's first two relation steps (a "together" total is not a relation step); the
    # step strings hold start value, operations, operands and results
    def head(ex):
        relations = ex.steps[:-1] if "together" in ex.question else ex.steps
        # formulas only: the names would make any two chains differ
        return tuple(formula(s) for s in relations[:2]) if len(relations) >= 2 else None

    train_heads = {head(ex) for ex in splits["train"]} - {None}
    assert len(train_heads) > 1000
    for name in ("valid", "test_gsm", "test_gsm_hard", "test_svamp", "test_multiarith", "test_longer"):
        held_out = {head(ex) for ex in splits[name]} - {None}
        assert held_out and not held_out & train_heads, name


def test_step_ranges(splits):
    def counts(name):
        return {len(ex.steps) for ex in splits[name]}

    assert counts("train") <= {1, 2, 3, 4}  # 1: a question about an intermediate quantity
    assert {len(ex.steps) for ex in splits["train"] if "other_quantity" not in ex.meta.get("variation", "")} \
        == {2, 3, 4}
    assert counts("test_multiarith") <= {2, 3}
    assert counts("test_longer") <= {5, 6} and min(counts("test_longer")) > max(counts("train"))


def test_gsm_hard_is_the_test_set_with_larger_numbers(splits):
    for ex, hard in zip(splits["test_gsm"], splits["test_gsm_hard"]):
        assert len(ex.steps) == len(hard.steps)
        factor = int(hard.answer) // max(1, int(ex.answer))
        assert int(hard.answer) == int(ex.answer) * factor or int(ex.answer) == 0
        # same words, other numbers
        assert re.sub(r"\d+", "N", ex.question) == re.sub(r"\d+", "N", hard.question)
    assert max(int(h.answer) for h in splits["test_gsm_hard"]) > 99


def _one_moved(before: list, after: list) -> bool:
    """Whether `after` is `before` with exactly one element moved to another place."""
    for i in range(len(before)):
        rest = before[:i] + before[i + 1:]
        if any(rest[:j] + [before[i]] + rest[j:] == after for j in range(len(before)) if j != i):
            return True
    return False


def _check_variation(ex, base, kinds, reorder="move", value_max=GeneratorConfig().value_max):
    """`ex` is `base` (the same problem, plain) with exactly the variations in `kinds`."""
    facts = lambda e: [f.strip() + "." for f in e.question.split("How")[0].split(".") if f.strip()]
    ex_facts, base_facts = facts(ex), facts(base)
    # an irrelevant sentence: one fact more, about someone and something not in the problem
    assert len(ex_facts) == len(base_facts) + ("distractor" in kinds), (kinds, ex.question)
    extra = [f for f in ex_facts if f not in base_facts]
    assert len(extra) == ("distractor" in kinds)
    # reordered: the same facts in another order (the irrelevant one aside)
    kept = [f for f in ex_facts if f in base_facts]
    assert sorted(kept) == sorted(base_facts)
    assert (kept != base_facts) == ("reordered" in kinds), (kinds, ex.question)
    if "reordered" in kinds and reorder == "move":  # one fact taken out and put elsewhere
        assert _one_moved(base_facts, kept), (ex.question, base.question)
    # another question: about someone earlier in the chain (answered by a prefix of the
    # steps) or the last two people's total (one step more, adding their counts)
    other = ex.question.split("How")[1] != base.question.split("How")[1]
    assert other == any(k in QUESTION_VARIATIONS for k in kinds), (kinds, ex.question)
    if "other_quantity" in kinds:
        assert len(ex.steps) < len(base.steps) and ex.steps == base.steps[: len(ex.steps)]
    elif "together" in kinds:
        assert ex.steps[:-1] == base.steps
        results = [step_result(s) for s in base.steps]
        a, b = results[-2] if len(results) > 1 else re.search(r"\d+", base.question).group(), results[-1]
        assert formula(ex.steps[-1]) == f"<<{a}+{b}={int(a) + int(b)}>>" and ex.answer == str(int(a) + int(b))
        assert ex.question.endswith(" together?")
        assert int(ex.answer) <= value_max  # the total is a number of the range steps compute in
    else:
        assert ex.steps == base.steps and ex.answer == base.answer


@pytest.mark.parametrize("variations", [GeneratorConfig().variations, VARIATIONS])
def test_svamp_combines_two_or_three_variations(variations):
    cfg = GeneratorConfig(variations=variations)
    splits = generate_splits(0, cfg, SIZES)
    combos = {ex.meta["variation"] for ex in splits["test_svamp"]}
    assert combos == {"+".join(c) for c in svamp_combinations(variations)}  # every combination occurs
    for ex, base in zip(splits["test_svamp"], splits["test_gsm"]):
        kinds = ex.meta["variation"].split("+")
        assert 2 <= len(kinds) and set(kinds) <= set(variations)
        assert sum(k in QUESTION_VARIATIONS for k in kinds) <= 1  # two questions cannot be asked at once
        _check_variation(ex, base, kinds)
        assert len(ex.steps) <= 4  # never longer than training's longest (that is `longer`'s test)


def variations_in(ex) -> set:
    """The variations a problem's text shows, read from the text alone."""
    facts_text, question = ex.question.split(" How many ")
    obj = question.split()[0]
    facts = [f.strip() for f in facts_text.split(".") if f.strip()]
    found = set()
    chain, refers = [], {}  # chain sentences' subjects in text order; subject -> referent
    for f in facts:
        words = f.split()
        if "than" in words or "as many as" in f:
            refers[words[0]] = words[-1]
            chain.append(words[0])
        elif words[-1] == obj:
            chain.append(words[0])
        else:
            found.add("distractor")  # someone holding something the question is not about
    if any(chain.index(ref) > chain.index(subj) for subj, ref in refers.items()):
        found.add("reordered")  # a fact before the one it refers to
    asked = question.split(" does ")[1].split()[0] if " does " in question else None
    if asked in refers.values():
        found.add("other_quantity")  # someone later in the chain depends on the one asked about
    if question.endswith(" together?"):
        found.add("together")
    return found


@pytest.mark.parametrize("variations", [GeneratorConfig().variations, VARIATIONS])
def test_variations_are_where_they_should_be(variations):
    splits = generate_splits(0, GeneratorConfig(variations=variations), SIZES)
    for ex in splits["test_gsm"] + splits["test_gsm_hard"] + splits["valid"]:
        assert variations_in(ex) == set(), ex
    for ex in splits["test_svamp"]:
        assert variations_in(ex) == set(ex.meta["variation"].split("+")), ex
    for ex in splits["train"]:
        kind = ex.meta.get("variation")
        assert variations_in(ex) == ({kind} if kind in VARIATIONS else set()), ex


def test_train_carries_each_variation_alone_in_its_share():
    cfg = GeneratorConfig(large_prob=0.1, variation_prob=0.15)
    train = generate_splits(3, cfg, SplitSizes(train=6000, valid=50, test=50))["train"]
    kinds = [ex.meta.get("variation") for ex in train]
    share = {k: kinds.count(k) / len(train) for k in set(kinds)}
    # the shares asked for (binomial noise at n = 6000 is about 0.005)
    assert abs(share["enlarged"] - 0.1) < 0.02
    assert abs(sum(share[k] for k in cfg.variations) - 0.15) < 0.02
    assert all(abs(share[k] - 0.05) < 0.015 for k in cfg.variations)  # each variation alone, an equal share
    assert "other_quantity" not in share  # not configured, so absent
    assert not any(k and "+" in k for k in kinds)  # never two at once: that is svamp's


def test_plain_training_keeps_every_number_in_range():
    cfg = GeneratorConfig(large_prob=0.0, variation_prob=0.0)
    train = generate_splits(1, cfg, SplitSizes(train=2000, valid=50, test=50))["train"]
    assert all(not ex.meta for ex in train)
    numbers = {int(x) for ex in train for step in ex.steps for x in re.findall(r"\d+", step)}
    assert max(numbers) <= cfg.value_max


def test_enlarged_training_problems_use_gsm_hard_numbers(splits):
    enlarged = [ex for ex in splits["train"] if ex.meta.get("variation") == "enlarged"]
    plain = [ex for ex in splits["train"] if not ex.meta]
    assert enlarged and plain
    biggest = lambda ex: max(int(x) for x in re.findall(r"\d+", ex.question))
    assert all(biggest(ex) <= 30 for ex in plain)
    # given numbers (start, +/- operands) are multiples of one factor in hard_factor: the
    # numbers gsm_hard uses throughout, here in a small share
    assert sum(biggest(ex) >= 20 for ex in enlarged) / len(enlarged) > 0.95
    hard_numbers = {x for ex in splits["test_gsm_hard"] for x in re.findall(r"\d+", ex.question)}
    train_numbers = {x for ex in enlarged for x in re.findall(r"\d+", ex.question)}
    assert len(hard_numbers & train_numbers) / len(hard_numbers) > 0.8  # known tokens, though rare


def test_config_is_validated():
    with pytest.raises(ValueError, match="together_prob"):
        GeneratorConfig(together_prob=2)
    with pytest.raises(ValueError):
        GeneratorConfig(start_min=0)


def test_reorder_switch():
    # "move" (the default) takes one fact out and puts it elsewhere; "shuffle" may move several
    import random

    problems = [sample_problem(random.Random(i), 4, GeneratorConfig()) for i in range(50)]
    moved_more = 0
    for reorder in ("move", "shuffle"):
        for i, p in enumerate(problems):
            ex = vary(random.Random(i), p, ("reordered",), reorder=reorder)
            _check_variation(ex, realize(p), ("reordered",), reorder=reorder)
            facts = [f.strip() for f in ex.question.split("How")[0].split(".") if f.strip()]
            base = [f.strip() for f in realize(p).question.split("How")[0].split(".") if f.strip()]
            moved_more += reorder == "shuffle" and not _one_moved(base, facts)
    assert moved_more > 0  # 5 facts shuffled: most orders are more than one move away
    with pytest.raises(ValueError, match="reorder"):
        GeneratorConfig(reorder="reverse")


def test_realize_reorder_keeps_steps():
    import random

    p = sample_problem(random.Random(1), 3, GeneratorConfig(together_prob=0))
    plain, shuffled = realize(p), realize(p, order=[2, 0, 1, 3])
    assert plain.steps == shuffled.steps and plain.answer == shuffled.answer
    assert plain.question != shuffled.question


ASKED_RE = re.compile(r"How many \w+ (?:does (\w+) have|do (\w+) and (\w+) have together)\?$")


def test_each_step_names_the_person_it_computes_and_the_last_one_is_asked_about():
    # a fact "X has ... than Y." makes X's count from Y's: the steps walk that chain by name
    splits = generate_splits(0, GeneratorConfig(step_names=True, variations=VARIATIONS), SIZES)
    for name, examples in splits.items():
        for ex in examples:
            sources = dict(re.findall(r"(\w+) has [^.]*? (?:than|as many as) (\w+)\.", ex.question))
            start = re.search(r"(\w+) has \d+ \w+\.", ex.question).group(1)
            people = [s[: s.index(" <<")] for s in ex.steps]
            chain = [start]
            if ex.question.endswith(" together?"):  # the total names the last two people
                assert people[-1] == f"{people[-3] if len(people) > 2 else start} and {people[-2]}"
                people = people[:-1]
            for who in people:
                assert sources[who] == chain[-1], (name, ex)  # computed from the one before
                chain.append(who)
            asked = [a for a in ASKED_RE.search(ex.question).groups() if a]
            assert people[-1] == asked[-1], (name, ex)  # other_quantity too: it stops there
    other = [ex for ex in splits["test_svamp"] if "other_quantity" in ex.meta["variation"]]
    assert other


def test_step_names_off_gives_bare_formulas():
    cfg = GeneratorConfig(step_names=False)
    named = generate_splits(3, GeneratorConfig(step_names=True), SplitSizes(200, 10, 20))
    bare = generate_splits(3, cfg, SplitSizes(200, 10, 20))
    for split in named:
        for a, b in zip(named[split], bare[split]):
            assert a.question == b.question and a.answer == b.answer  # the same problems
            assert [formula(s) for s in a.steps] == list(b.steps)
            assert all(s.startswith("<<") for s in b.steps)


def test_question_first_moves_only_the_question():
    # the same problems, steps and answers; the question sentence leads instead of closing
    cfg = GeneratorConfig(question_first=True)
    first = generate_splits(3, cfg, SplitSizes(300, 10, 20))
    last = generate_splits(3, GeneratorConfig(), SplitSizes(300, 10, 20))
    for split in last:
        for a, b in zip(first[split], last[split]):
            assert (a.steps, a.answer, a.meta) == (b.steps, b.answer, b.meta)
            facts, question = b.question.split(" How many ")
            assert a.question == f"How many {question} {facts}", (split, a)
            # the variations read from the text are the ones the row records
            assert variations_in(b) == set(b.meta.get("variation", "").split("+")) & set(VARIATIONS)


def test_pair_prob_puts_svamp_pairs_in_training_never_its_triples():
    cfg = GeneratorConfig(large_prob=0.1, variation_prob=0.15, pair_prob=0.1)
    train = generate_splits(3, cfg, SplitSizes(train=6000, valid=50, test=50))["train"]
    kinds = [ex.meta.get("variation") or "" for ex in train]
    pairs = [k for k in kinds if k.count("+") == 1]
    assert abs(len(pairs) / len(train) - 0.1) < 0.02
    assert set(pairs) == {"+".join(c) for c in svamp_combinations(cfg.variations) if len(c) == 2}
    assert not any(k.count("+") > 1 for k in kinds)  # three at once stays svamp's alone
    for ex in train:
        if "+" in (ex.meta.get("variation") or ""):
            assert variations_in(ex) == set(ex.meta["variation"].split("+")), ex
    with pytest.raises(ValueError, match="pair_prob"):
        GeneratorConfig(large_prob=0.5, variation_prob=0.3, pair_prob=0.3)
