import json
from pathlib import Path

import pytest

from latent_reasoning.loaders import LoadResult, dataset_stats, load_examples
from latent_reasoning.schema import DataError, Example, step_result, write_jsonl

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def jsonl(path: Path, rows) -> str:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def qsa(result: LoadResult):
    return [(ex.question, ex.steps, ex.answer) for ex in result.examples]


ICOT = (
    "Ann has 3 apples and buys 4 more. How many?||<<3+4=7>> #### 7\n"
    "\n"
    "Bob runs 2/.5 laps then 3 times that.||<<2/.5=4>> <<4*3=12>> #### 12\n"
    "Cy has 5.|| #### 5\n"
    "Dee has 2 bags of 4 and eats 1.||<<2*4=8>> <<8-1=7>> #### 8\n"
)


# ---------------------------------------------------------------- each format loads

def test_icot_loads(tmp_path):
    path = write(tmp_path / "aug.txt", ICOT)
    result = load_examples(path)  # auto: .txt -> icot
    assert qsa(result) == [
        ("Ann has 3 apples and buys 4 more. How many?", ("<<3+4=7>>",), "7"),
        ("Bob runs 2/.5 laps then 3 times that.", ("<<2/.5=4>>", "<<4*3=12>>"), "12"),
        ("Cy has 5.", (), "5"),  # no steps: loads
        ("Dee has 2 bags of 4 and eats 1.", ("<<2*4=8>>", "<<8-1=7>>"), "8"),  # mismatch: loads
    ]
    assert result.skipped == []
    assert qsa(load_examples(path, fmt="icot")) == qsa(result)


def test_gsm8k_loads(tmp_path):
    path = jsonl(tmp_path / "gsm.jsonl", [
        {"question": "Natalia sold 48 clips in April and half as many in May. Total?",
         "answer": "In May 48/2 = <<48/2=24>>24.\nTotal 48+24 = <<48+24=72>>72.\n#### 72"},
        {"question": "What is 2 plus 2?", "answer": "It is four.\n#### 4"},
        {"question": "Big?", "answer": "<<1000*5=5000>>5000 #### 5,000"},
    ])
    result = load_examples(path)  # auto sniffs gsm8k (question+answer, no steps/cot)
    assert qsa(result) == [
        ("Natalia sold 48 clips in April and half as many in May. Total?",
         ("<<48/2=24>>", "<<48+24=72>>"), "72"),
        ("What is 2 plus 2?", (), "4"),
        ("Big?", ("<<1000*5=5000>>",), "5,000"),
    ]
    assert qsa(load_examples(path, fmt="gsm8k")) == qsa(result)


def test_jsonl_steps_and_cot(tmp_path):
    path = jsonl(tmp_path / "ours.jsonl", [
        {"question": "Q1", "steps": ["<<1+1=2>>", "<<2*3=6>>"], "answer": "6"},
        {"question": "Q2", "cot": "<<5-2=3>> <<3+3=6>>", "answer": 6},
        {"question": "Q3", "cot": [], "answer": 1.5},
        {"question": "Q4", "cot": "", "answer": "x"},
    ])
    result = load_examples(path)
    assert qsa(result) == [
        ("Q1", ("<<1+1=2>>", "<<2*3=6>>"), "6"),
        ("Q2", ("<<5-2=3>>", "<<3+3=6>>"), "6"),
        ("Q3", (), "1.5"),
        ("Q4", (), "x"),
    ]
    assert qsa(load_examples(path, fmt="json")) == qsa(result)


def test_json_list_file(tmp_path):
    rows = [
        {"question": "Q1", "cot": ["<<1+1=2>>"], "answer": "2"},
        {"question": "Q2", "steps": "<<2+2=4>>", "answer": "4"},
    ]
    path = write(tmp_path / "list.json", json.dumps(rows, indent=2))
    assert qsa(load_examples(path)) == [("Q1", ("<<1+1=2>>",), "2"), ("Q2", ("<<2+2=4>>",), "4")]


def test_roundtrip_write_jsonl(tmp_path):
    examples = [Example("Q1", ("<<1+1=2>>",), "2", {"variation": "x"}), Example("Q2", (), "0")]
    write_jsonl(tmp_path / "out.jsonl", examples)
    loaded = load_examples(str(tmp_path / "out.jsonl")).examples
    assert loaded == examples
    assert loaded[0].meta == {"variation": "x"}


def test_limit_keeps_first_valid(tmp_path):
    path = write(tmp_path / "aug.txt", "bad line\n" + ICOT)
    result = load_examples(path, skip_invalid=True, limit=2)
    assert [ex.answer for ex in result.examples] == ["7", "12"]
    assert [where for where, _ in result.skipped] == [f"{path}:1"]
    assert load_examples(path, skip_invalid=True, limit=0).examples == []


# ---------------------------------------------------------------- stats

def test_dataset_stats(tmp_path):
    examples = load_examples(write(tmp_path / "aug.txt", ICOT)).examples
    examples.append(Example("one two three", ("<<2500*2=5000>>",), "5,000"))  # equal numerically
    examples.append(Example("w", ("<<a+b=c>>",), "c"))  # equal as strings
    stats = dataset_stats(examples)
    assert stats == {
        "count": 6,
        "steps_histogram": {"0": 1, "1": 3, "2": 2},
        "mean_steps": 7 / 6,
        "mean_question_words": pytest.approx((10 + 8 + 3 + 9 + 3 + 1) / 6),
        "no_steps": 1,
        "last_step_mismatch": 1,
    }
    json.dumps(stats)
    assert list(stats["steps_histogram"]) == ["0", "1", "2"]
    assert dataset_stats([])["count"] == 0
    # generated rows say what was done to them; the counts appear only then
    varied = examples + [Example("x", ("<<1+1=2>>",), "2", {"variation": "reordered"})]
    assert dataset_stats(varied)["variations"] == {"none": 6, "reordered": 1}


# ---------------------------------------------------------------- malformed rows

GOOD_ICOT = "Fine question?||<<1+1=2>> #### 2\n"


@pytest.mark.parametrize("bad, reason", [
    ("No separator <<1+1=2>> #### 2", "'||'"),
    ("No answer marker?||<<1+1=2>> 2", "'####'"),
    ("||<<1+1=2>> #### 2", "question"),
    ("Empty answer?||<<1+1=2>> ####   ", "answer"),
    ("Words in steps?||<<1+1=2>> so 2 #### 2", "outside"),
    ("Not a formula?||<<1+1>> #### 2", "formula"),
    ("Two equals?||<<1+1=2=2>> #### 2", "formula"),
    ("Unclosed?||<<1+1=2 #### 2", "outside"),
])
def test_icot_malformed(tmp_path, bad, reason):
    path = write(tmp_path / "broken.txt", GOOD_ICOT + "\n" + bad + "\n" + GOOD_ICOT)
    with pytest.raises(DataError, match=reason) as info:
        load_examples(path)
    assert str(info.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize("bad, reason", [
    ('{"question": "Q", "answer": "x #### 1"', "broken JSON"),
    ({"answer": "#### 1"}, "missing field 'question'"),
    ({"question": "Q"}, "missing field 'answer'"),
    ({"question": "  ", "answer": "#### 1"}, "question"),
    ({"question": "Q", "answer": "no final line"}, "####"),
    ({"question": "Q", "answer": "<<1+1=2>> ####  "}, "answer"),
    ({"question": "Q", "answer": "<<oops>> #### 1"}, "formula"),
    ({"question": "Q", "answer": 3}, "answer"),
    ({"question": ["Q"], "answer": "#### 1"}, "question"),
    ('["not", "an", "object"]', "object"),
])
def test_gsm8k_malformed(tmp_path, bad, reason):
    good = {"question": "Q", "answer": "<<1+1=2>>2\n#### 2"}
    path = jsonl(tmp_path / "broken.jsonl", [good, good, bad])
    with pytest.raises(DataError, match=reason) as info:
        load_examples(path, fmt="gsm8k")
    assert str(info.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize("bad, reason", [
    ('{"question": "Q", "steps": [], ', "broken JSON"),
    ({"steps": [], "answer": "1"}, "missing field 'question'"),
    ({"question": "Q", "steps": []}, "missing field 'answer'"),
    ({"question": "Q", "answer": "1"}, "missing field 'steps'"),
    ({"question": "", "steps": [], "answer": "1"}, "question"),
    ({"question": "Q", "steps": [], "answer": " "}, "answer"),
    ({"question": "Q", "steps": ["1+1=2"], "answer": "2"}, "formula"),
    ({"question": "Q", "steps": ["<<1+1=2>> Kim"], "answer": "2"}, "formula"),
    ({"question": "Q", "steps": ["Kim <<1+1=2>> <<2+1=3>>"], "answer": "3"}, "formula"),
    ({"question": "Q", "cot": "<<1+1=2>> then 2", "answer": "2"}, "outside"),
    ({"question": "Q", "steps": [1, 2], "answer": "2"}, "list of strings"),
    ({"question": "Q", "steps": 5, "answer": "2"}, "list of step strings"),
    ({"question": "Q", "steps": [], "answer": None}, "answer"),
    ({"question": "Q", "steps": [], "cot": [], "answer": "1"}, "both"),
])
def test_json_malformed(tmp_path, bad, reason):
    good = {"question": "Q", "steps": ["<<1+1=2>>"], "answer": "2"}
    path = jsonl(tmp_path / "broken.jsonl", [good, good, bad])
    with pytest.raises(DataError, match=reason) as info:
        load_examples(path, fmt="json")
    assert str(info.value).startswith(f"{path}:3: ")


def test_json_list_malformed_line_numbers(tmp_path):
    rows = [{"question": "Q", "steps": [], "answer": "1"}, {"question": "Q", "steps": ["bad"], "answer": "1"}]
    path = write(tmp_path / "list.json", "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    with pytest.raises(DataError, match="formula") as info:
        load_examples(path)
    assert str(info.value).startswith(f"{path}:3: ")
    broken = write(tmp_path / "broken.json", '[\n{"question": "Q", "steps": [], "answer": "1"},\n{"question": \n]')
    with pytest.raises(DataError, match="broken JSON") as info:
        load_examples(broken, fmt="json", skip_invalid=True)  # a broken .json file cannot be skipped past
    assert str(info.value).startswith(f"{broken}:4: ")


def test_not_utf8_line(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(GOOD_ICOT.encode() + b"Caf\xe9?||<<1+1=2>> #### 2\n")
    with pytest.raises(DataError, match="UTF-8") as info:
        load_examples(str(path))
    assert str(info.value).startswith(f"{path}:2: ")


# ---------------------------------------------------------------- skip_invalid

def test_skip_invalid_reports_exact_lines(tmp_path):
    path = write(tmp_path / "mixed.txt", (
        GOOD_ICOT            # 1
        + "no separator\n"   # 2
        + "\n"               # 3 blank: not a row
        + GOOD_ICOT          # 4
        + "Q?||<<1>> #### 1\n"  # 5
        + "Q?||#### \n"      # 6
        + GOOD_ICOT          # 7
    ))
    result = load_examples(path, skip_invalid=True)
    assert len(result.examples) == 3
    assert [where for where, _ in result.skipped] == [f"{path}:2", f"{path}:5", f"{path}:6"]
    reasons = [reason for _, reason in result.skipped]
    assert "'||'" in reasons[0] and "formula" in reasons[1] and "answer" in reasons[2]
    assert not any(reason.startswith(str(path)) for reason in reasons)


def test_skip_invalid_jsonl(tmp_path):
    good = {"question": "Q", "steps": [], "answer": "1"}
    path = jsonl(tmp_path / "mixed.jsonl", [good, "{broken", {"question": "Q"}, good])
    result = load_examples(path, skip_invalid=True)
    assert len(result.examples) == 2
    assert [where for where, _ in result.skipped] == [f"{path}:2", f"{path}:3"]


# ---------------------------------------------------------------- sources and formats

def test_unknown_format(tmp_path):
    path = write(tmp_path / "aug.txt", GOOD_ICOT)
    with pytest.raises(DataError, match="icot") as info:
        load_examples(path, fmt="csv")
    assert "'csv'" in str(info.value)


def test_missing_file(tmp_path):
    for fmt in ("auto", "icot", "json", "gsm8k"):
        with pytest.raises(DataError, match="no such file") as info:
            load_examples(str(tmp_path / "nope.jsonl"), fmt=fmt)
        assert "nope.jsonl" in str(info.value)


def test_unknown_extension(tmp_path):
    path = write(tmp_path / "data.csv", "a,b\n")
    with pytest.raises(DataError, match="fmt="):
        load_examples(path)


def test_hub_offline_asks_for_local_path(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the libraries read the variable at import time; make sure offline mode holds here too
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="local file path") as info:
        load_examples("no-such-org-zz/no-such-dataset-zz")  # auto: not a path -> hub
    assert "could not be loaded" in str(info.value)
    assert "no-such-org-zz/no-such-dataset-zz" in str(info.value)


# ---------------------------------------------------------------- real data samples

def test_real_data_samples_load():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    aug = load_examples(str(SHARED_DATA / "gsm8k_aug" / "valid.txt"))
    gsm = load_examples(str(SHARED_DATA / "gsm8k" / "train_head500.jsonl"))
    for result in (aug, gsm):
        assert len(result.examples) == 500 and result.skipped == []
    assert aug.examples[0].steps == ("<<4-2=2>>", "<<2/.5=4>>", "<<12/4=3>>", "<<100*3=300>>")
    assert aug.examples[0].answer == "300"
    assert gsm.examples[0].steps == ("<<48/2=24>>", "<<48+24=72>>")
    assert gsm.examples[0].answer == "72"
    assert dataset_stats(aug.examples)["no_steps"] > 0  # real GSM8k-Aug rows without steps load


def test_a_step_may_carry_a_label_before_its_formula(tmp_path):
    # the generator's steps name the person they compute; the result is the formula's
    path = jsonl(tmp_path / "named.jsonl", [{"question": "Q", "steps": ["Kim <<1+1=2>>", "Ann Lee <<2*3=6>>"],
                                             "answer": "6"}])
    (ex,) = load_examples(path, fmt="json").examples
    assert ex.steps == ("Kim <<1+1=2>>", "Ann Lee <<2*3=6>>")
    assert step_result(ex.steps[-1]) == "6"
