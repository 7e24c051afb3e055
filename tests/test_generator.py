import re

import pytest

from latent_reasoning.generator import GeneratorConfig, SplitSizes, generate_splits, realize, sample_problem
from latent_reasoning.schema import STEP_RE, step_result

SIZES = SplitSizes(train=3000, valid=100, test=200)


@pytest.fixture(scope="module")
def splits():
    return generate_splits(0, GeneratorConfig(), SIZES)


def evaluate_formula(step: str) -> tuple[int, int]:
    lhs, rhs = step[2:-2].split("=")
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
            operands = re.findall(r"\d+", step[2:-2].split("=")[0])
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
    for name in ("valid", "test_gsm", "test_multiarith", "test_longer", "test_gsm_hard"):
        assert not train & {ex.question for ex in splits[name]}, name
    assert not {ex.question for ex in splits["valid"]} & {ex.question for ex in splits["test_gsm"]}


def test_train_avoids_test_chains_and_their_prefixes(splits):
    # a chain's first two relation steps (a "together" total is not a relation step); the
    # step strings hold start value, operations, operands and results
    def head(ex):
        relations = ex.steps[:-1] if "together" in ex.question else ex.steps
        return tuple(relations[:2]) if len(relations) >= 2 else None

    train_heads = {head(ex) for ex in splits["train"]} - {None}
    assert len(train_heads) > 1000
    for name in ("valid", "test_gsm", "test_multiarith", "test_longer"):
        held_out = {head(ex) for ex in splits[name]} - {None}
        assert held_out and not held_out & train_heads, name


def test_step_ranges(splits):
    def counts(name):
        return {len(ex.steps) for ex in splits[name]}

    assert counts("train") <= {2, 3, 4}
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


def test_svamp_variations(splits):
    kinds = {ex.meta["variation"] for ex in splits["test_svamp"]}
    assert kinds == {"reordered", "distractor", "other_quantity"}
    for ex, base in zip(splits["test_svamp"], splits["test_gsm"]):
        kind = ex.meta["variation"]
        if kind == "reordered":
            assert ex.question != base.question and sorted(ex.question.split()) == sorted(base.question.split())
            assert ex.answer == base.answer
        elif kind == "distractor":
            assert len(ex.question) > len(base.question) and ex.answer == base.answer
        else:
            assert len(ex.steps) < len(base.steps) or ex.question.split("How")[1] != base.question.split("How")[1]


def test_config_is_validated():
    with pytest.raises(ValueError, match="together_prob"):
        GeneratorConfig(together_prob=2)
    with pytest.raises(ValueError):
        GeneratorConfig(start_min=0)


def test_realize_reorder_keeps_steps():
    import random

    p = sample_problem(random.Random(1), 3, GeneratorConfig(together_prob=0))
    plain, shuffled = realize(p), realize(p, order=[2, 0, 1, 3])
    assert plain.steps == shuffled.steps and plain.answer == shuffled.answer
    assert plain.question != shuffled.question
