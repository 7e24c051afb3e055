import pytest

from latent_reasoning.formats import IGNORE, encode_example, encode_examples, prompt_text, target_text
from latent_reasoning.generator import GeneratorConfig, SplitSizes, generate_splits
from latent_reasoning.tokenizer import LATENT_TOKENS, build_tokenizer, load_tokenizer, special_ids


@pytest.fixture(scope="module")
def data():
    return generate_splits(3, GeneratorConfig(), SplitSizes(500, 20, 50))


@pytest.fixture(scope="module")
def tokenizer(data):
    return build_tokenizer(prompt_text(ex) + target_text(ex, "cot") for ex in data["train"])


def test_round_trip_on_every_split(tokenizer, data):
    for name, examples in data.items():
        for ex in examples:
            text = prompt_text(ex) + target_text(ex, "cot")
            ids = tokenizer(text)["input_ids"]
            assert tokenizer.unk_token_id not in ids, (name, text)
            assert tokenizer.decode(ids) == text


def test_numbers_are_whole_tokens_and_large_numbers_still_representable(tokenizer):
    for n in ("0", "7", "42", "999"):
        assert tokenizer.tokenize(n) == [n]
    # a bare-formula step (the default data) starts a line with "<<"
    assert tokenizer.tokenize("<<12+5=17>>") == ["<<", "12", "+", "5", "=", "17", ">>"]
    big = "<<1265-207=1058>> 100005"
    ids = tokenizer(big)["input_ids"]
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == big
    # a number's leading space is its own token: "12" is one token in question and formula
    assert tokenizer.tokenize("Ava has 12") == ["Ava", " has", " ", "12"]


def test_special_tokens_reserved_and_saved(tokenizer, tmp_path):
    ids = special_ids(tokenizer)
    assert len(set(ids.values())) == len(ids)
    for tok in LATENT_TOKENS:
        assert tokenizer.tokenize(tok) == [tok]
    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert special_ids(again) == ids and len(again) == len(tokenizer)
    text = "Ava has 3 apples.\n<bot><latent><latent><eot>### 3<eos>"
    assert again(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_missing_tokenizer_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_tokenizer(tmp_path / "nope")


def test_training_sequence_masks_the_prompt(tokenizer, data):
    ex = data["train"][0]
    for method in ("cot", "nocot"):
        ids, labels = encode_example(tokenizer, ex, method)
        n_prompt = len(tokenizer(prompt_text(ex))["input_ids"])
        assert labels[:n_prompt] == [IGNORE] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:]
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[n_prompt:-1]) == target_text(ex, method)
        assert encode_examples(tokenizer, [ex], method) == [(ids, labels)]
    assert target_text(ex, "nocot") == f"### {ex.answer}"
    with pytest.raises(ValueError, match="method"):
        target_text(ex, "bogus")


def test_step_named_formulas_keep_their_space_before_the_marker():
    named = generate_splits(3, GeneratorConfig(step_names=True), SplitSizes(300, 10, 10))
    tok = build_tokenizer(prompt_text(ex) + target_text(ex, "cot") for ex in named["train"])
    # a step that names its person: the formula's "<<" comes with the space before it
    assert tok.tokenize("Kim <<12+5=17>>") == ["Kim", " <<", "12", "+", "5", "=", "17", ">>"]
