"""What both benchmarks share: the model and data they time (the default task's generator
and tokenizer, a freshly initialised GPT-2-style model, 4 layers x 128 unless told
otherwise), and how they summarise repeated timings."""

import torch

from latent_reasoning.config import ModelConfig
from latent_reasoning.formats import prompt_text, target_text
from latent_reasoning.generator import GeneratorConfig, SplitSizes, generate_splits
from latent_reasoning.modeling import build_model
from latent_reasoning.tokenizer import build_tokenizer


def bench_setup(threads: int, test_size: int, n_layer: int = 4, n_embd: int = 128):
    """(data splits, tokenizer, model), seeded, with torch using `threads` threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = generate_splits(0, GeneratorConfig(), SplitSizes(2000, 10, test_size))
    tok = build_tokenizer(prompt_text(ex) + target_text(ex, "cot") for ex in data["train"])
    model = build_model(ModelConfig(n_layer=n_layer, n_embd=n_embd, n_head=4), tok)
    return data, tok, model


def median(xs):
    """The middle value (the upper one of an even count): a timing that was measured."""
    return sorted(xs)[len(xs) // 2]
