"""ProsQA-style graph problems (prosqa.py): generated paths are valid and shortest, exactly
one option is reachable, splits share no graph; the loaders read hand-written files in the
ProsQA and ProntoQA formats and name the file and item of a malformed one."""

import json

import pytest

from latent_reasoning import prosqa
from latent_reasoning.schema import DataError

CFG = prosqa.ProsqaConfig()


@pytest.fixture(scope="module")
def splits():
    return prosqa.generate_splits(0, CFG, {"train": 300, "valid": 50, "test": 100})


def test_every_path_is_valid_in_its_graph_and_shortest(splits):
    for ex in (ex for split in splits.values() for ex in split):
        m = ex.meta
        symbols, edges, root, target, path = m["idx_to_symbol"], m["edges"], m["root"], m["target"], m["path"]
        assert path[0] == root and path[-1] == target
        assert all([a, b] in edges for a, b in zip(path, path[1:]))  # every step an edge of the graph
        dist = prosqa.distances(len(symbols), edges, root)
        assert len(path) - 1 == dist[target]  # shortest
        assert CFG.steps[0] <= len(ex.steps) <= CFG.steps[1]
        # the steps are that path in words, and the answer names the target
        assert ex.steps == tuple(prosqa.render_edge(symbols, a, b, root) for a, b in zip(path, path[1:]))
        assert ex.answer == f"{symbols[root]} is a {symbols[target]}."
        # every fact of the graph is in the question, and nothing else before it
        facts = [prosqa.render_edge(symbols, a, b, root) for a, b in edges]
        assert sorted(ex.question.split("? ")[0].rsplit(" Is ", 1)[0].replace(". ", ".\n").split("\n")) == sorted(facts)


def test_exactly_one_option_is_reachable_and_both_are_named(splits):
    for ex in splits["train"]:
        m = ex.meta
        dist = prosqa.distances(len(m["idx_to_symbol"]), m["edges"], m["root"])
        assert dist[m["target"]] is not None and dist[m["neg_target"]] is None
        options = ex.question.rsplit(" Is ", 1)[1]
        assert m["idx_to_symbol"][m["target"]] in options and m["idx_to_symbol"][m["neg_target"]] in options
        # the wrong option is in the graph (some edge reaches it), not a stray name
        assert any(b == m["neg_target"] for _, b in m["edges"])


def test_the_search_is_not_one_line(splits):
    """Distractor branches (reachable concepts off every shortest path) in every problem,
    more than one shortest route in a good share, and the right option first about half
    the time."""
    firsts, several = [], []
    for ex in splits["train"]:
        m = ex.meta
        n = len(m["idx_to_symbol"])
        dist = prosqa.distances(n, m["edges"], m["root"])
        reachable = {v for v in range(n) if dist[v] is not None} - {m["root"]}
        assert reachable - set(m["path"]), "no distractor branch"
        several.append(prosqa.count_shortest_paths(n, m["edges"], m["root"], m["target"]) > 1)
        firsts.append(ex.question.rsplit(" Is ", 1)[1].split(" or ")[0].endswith(m["idx_to_symbol"][m["target"]]))
    assert 0.2 < sum(several) / len(several) < 0.8
    assert 0.35 < sum(firsts) / len(firsts) < 0.65


def test_splits_share_no_graph_and_generation_is_seeded(splits):
    sigs = {name: {prosqa.signature(ex) for ex in split} for name, split in splits.items()}
    assert all(len(sigs[name]) == len(splits[name]) for name in splits)
    assert not (sigs["train"] & sigs["valid"] or sigs["train"] & sigs["test"] or sigs["valid"] & sigs["test"])
    again = prosqa.generate_splits(0, CFG, {"train": 300, "valid": 50, "test": 100})
    assert [ex.question for ex in again["test"]] == [ex.question for ex in splits["test"]]
    other = prosqa.generate_splits(1, CFG, {"train": 300, "valid": 50, "test": 100})
    assert [ex.question for ex in other["test"]] != [ex.question for ex in splits["test"]]


def test_statistics_are_the_papers_kind_scaled_down(splits):
    stats = prosqa.statistics(splits["train"])
    assert 7 <= stats["nodes"] - 1 <= 9 and stats["edges"] > stats["nodes"]  # more edges than nodes: routes
    assert 3 <= stats["shortest_path"] <= 4 and stats["shortest_paths"] > 1.1


PROSQA_ITEM = {
    "question": "Every wumpus is a yumpus. Tom is a wumpus. Every rempus is a gorpus. Is Tom a yumpus or a gorpus?",
    "steps": ["Tom is a wumpus.", "Every wumpus is a yumpus."],
    "answer": "Tom is a yumpus.",
    "idx_to_symbol": ["Tom", "wumpus", "yumpus", "rempus", "gorpus"],
    "edges": [[1, 2], [0, 1], [3, 4]],
    "root": 0, "target": 2, "neg_target": 4,
}


def test_load_prosqa_reads_a_hand_written_file(tmp_path):
    path = tmp_path / "prosqa_test.json"
    path.write_text(json.dumps([PROSQA_ITEM, {**PROSQA_ITEM, "target": 1, "steps": ["Tom is a wumpus."],
                                              "answer": "Tom is a wumpus."}]))
    examples = prosqa.load_prosqa(path)
    assert len(examples) == 2
    assert examples[0].steps == ("Tom is a wumpus.", "Every wumpus is a yumpus.")
    assert examples[0].answer == "Tom is a yumpus." and examples[0].meta["neg_target"] == 4
    assert examples[1].meta["target"] == 1


@pytest.mark.parametrize("change, message", [
    ({"edges": [[1, 2], [0, 9]]}, "'edges'"),
    ({"root": 7}, "'root'"),
    ({"neg_target": 2}, "negative target"),       # reachable: not a valid wrong option
    ({"steps": "Tom is a wumpus."}, "'steps'"),
    ({"question": ""}, "'question'"),
])
def test_a_malformed_prosqa_item_names_the_file_and_item(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([PROSQA_ITEM, {**PROSQA_ITEM, **change}]))
    with pytest.raises(DataError, match=rf"bad\.json: item 1: .*{message}"):
        prosqa.load_prosqa(path)


def test_a_prosqa_item_missing_a_field_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{k: v for k, v in PROSQA_ITEM.items() if k != "idx_to_symbol"}]))
    with pytest.raises(DataError, match=r"bad\.json: item 0: missing field 'idx_to_symbol'"):
        prosqa.load_prosqa(path)


def test_load_prontoqa_reads_the_coconut_conversion(tmp_path):
    path = tmp_path / "prontoqa_test.json"
    rows = [{"question": "Every yumpus is a dumpus. Wren is a yumpus. True or false: Wren is a dumpus.",
             "steps": ["Wren is a yumpus.", "Every yumpus is a dumpus.", "Wren is a dumpus."], "answer": "True"},
            {"question": "Sally is a wumpus. True or false: Sally is not a wumpus.",
             "steps": ["Sally is a wumpus."], "answer": "False"}]
    path.write_text(json.dumps(rows))
    examples = prosqa.load_prontoqa(path)
    assert [ex.answer for ex in examples] == ["True", "False"] and len(examples[0].steps) == 3
    path.write_text(json.dumps(rows + [{"question": "Q", "steps": [], "answer": 3}]))
    with pytest.raises(DataError, match=r"prontoqa_test\.json: item 2: 'answer'"):
        prosqa.load_prontoqa(path)
    path.write_text("[{broken")
    with pytest.raises(DataError, match=r"prontoqa_test\.json: broken JSON"):
        prosqa.load_prontoqa(path)


def test_config_is_validated():
    with pytest.raises(ValueError, match="prosqa.steps"):
        prosqa.ProsqaConfig(steps=(4, 2))
    with pytest.raises(ValueError, match="prosqa.concepts"):
        prosqa.ProsqaConfig(concepts=(5, 6), steps=(3, 5))


def test_concept_names_are_distinct_and_seeded():
    names = prosqa.concept_names(120, seed=3)
    assert len(set(names)) == 120 and names == prosqa.concept_names(120, seed=3)
    assert names != prosqa.concept_names(120, seed=4)
    assert all(n.isalpha() and n.islower() for n in names)
    with pytest.raises(ValueError, match="at most"):
        prosqa.concept_names(10**6)


@pytest.mark.parametrize("reasoning, expected", [
    ("Tom is a wumpus. Every wumpus is a yumpus.", "correct_path"),
    ("Tom is a rempus. Every rempus is a wumpus. Every wumpus is a yumpus.", "longer_path"),
    ("Tom is a wumpus. Every wumpus is a gorpus.", "hallucination"),   # not an edge
    ("Tom is a wumpus. Every wumpus is a blimpus.", "hallucination"),  # not a concept of the graph
    ("Tom is a wumpus. Every yumpus is a wumpus.", "hallucination"),   # does not chain
    ("Tom is a rempus.", "wrong_target"),
    ("", "no_path"),
])
def test_path_classes_of_generated_reasoning(reasoning, expected):
    meta = {"idx_to_symbol": ["Tom", "wumpus", "yumpus", "rempus", "gorpus"], "root": 0, "target": 2,
            "edges": [[0, 1], [1, 2], [0, 3], [3, 1], [3, 4]]}
    assert prosqa.path_class(reasoning, meta) == expected


def test_every_generated_path_is_classed_correct(splits):
    for ex in splits["test"]:
        assert prosqa.path_class(" ".join(ex.steps), ex.meta) == "correct_path"


def test_the_no_planning_baselines_on_a_hand_made_graph():
    # entity 0 -> 1 -> 3 (the target), 0 -> 2 (a dead end); 4 (the wrong option) -> 1 and -> 5
    meta = {"edges": [[0, 1], [0, 2], [1, 3], [4, 1], [4, 5]], "root": 0, "target": 3, "neg_target": 4}
    # half the walks take 1 and reach the target; half stop at 2 and guess: 0.5 + 0.5 * 0.5
    assert prosqa.random_walk_accuracy(meta) == 0.75
    assert prosqa.out_degree_guess(meta) == 1.0  # the target has no outgoing edge, the wrong option two
    assert prosqa.out_degree_guess({**meta, "edges": [[0, 3], [3, 2], [4, 1]]}) == 0.5  # a tie
    # a walk that must pass a branch into nothing but the target always gets it right
    assert prosqa.random_walk_accuracy({**meta, "edges": [[0, 1], [0, 2], [1, 3], [2, 3]]}) == 1.0
