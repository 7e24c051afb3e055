"""Tokenizers: one built from the training split, or a pretrained model's own.

Our own tokenizer (built with the `tokenizers` library) is word-level over pieces cut by
one regular expression:

    " ?[A-Za-z]+"   a word with its leading space          " apples"
    "[0-9]{1,3}"    a number, in chunks of at most 3 digits  "12", "1265" -> "126" "5"
    " ?<<", ">>", " ?###"                                   formula and answer markers
    "\\s"             one whitespace character                " ", "\\n"
    "[^\\sA-Za-z0-9]" one punctuation character

Why whole numbers: a trial on this machine showed small from-scratch models stall on
per-digit arithmetic (`8+1=10`) while whole-number tokens make each step one lookup.
Every string of 1-3 digits is in the vocabulary, so any number is representable
(`gsm_hard`'s enlarged numbers become 2 chunks; numbers up to 999 are one token).
A number's leading space is its own token, so "12" in a question and in a formula
are the same token. Decoding concatenates pieces, so decode(encode(text)) == text
for any text whose words were seen in training (unseen words become <unk>; the
tokenizer stage reports how many there are in every split).

The special tokens every later stage needs are reserved here, so no stage ever
resizes the embeddings of a model built from this tokenizer.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
BOT, EOT, LATENT, PAUSE = "<bot>", "<eot>", "<latent>", "<pause>"
LATENT_TOKENS = [BOT, EOT, LATENT, PAUSE]

PIECE_PATTERN = r" ?[A-Za-z]+|[0-9]{1,3}| ?<<|>>| ?###|\s|[^\sA-Za-z0-9]"


def _pre_tokenizer():
    return pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")


def build_tokenizer(texts, min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the pieces of `texts` plus every 1-3 digit string."""
    pre = _pre_tokenizer()
    counts = Counter()
    for text in texts:
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    digits = [str(i) for i in range(1000)] + [f"{i:02d}" for i in range(100)] + [f"{i:03d}" for i in range(100)]
    pieces = sorted(p for p, c in counts.items() if c >= min_frequency and not p.isdigit())
    vocab_list = [PAD, EOS, UNK] + LATENT_TOKENS + sorted(set(digits)) + pieces
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
        additional_special_tokens=LATENT_TOKENS, clean_up_tokenization_spaces=False,
    )
    return fast


def add_latent_tokens(tokenizer) -> int:
    """Give a pretrained tokenizer our special tokens (and a pad token if it has none).
    Returns how many tokens were added (the model's embeddings must grow by that)."""
    added = tokenizer.add_special_tokens({"additional_special_tokens": LATENT_TOKENS})
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": PAD})
    if tokenizer.eos_token is None:
        added += tokenizer.add_special_tokens({"eos_token": EOS})
    return added


def load_tokenizer(path: str | Path):
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no tokenizer at {path}: run the `tokenizer` stage first (dvc repro tokenizer)")
    tok = AutoTokenizer.from_pretrained(str(path))
    missing = [t for t in LATENT_TOKENS if t not in tok.get_vocab()]
    if missing or tok.pad_token is None or tok.eos_token is None:
        raise ValueError(f"tokenizer at {path} lacks special tokens {missing or '(pad/eos)'}")
    return tok


def special_ids(tokenizer) -> dict[str, int]:
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in LATENT_TOKENS}
    ids["pad"], ids["eos"] = tokenizer.pad_token_id, tokenizer.eos_token_id
    return ids
