"""Linear readouts of each step's result from the thoughts: python scripts/read_thoughts.py VARIANT:MODEL_DIR[:PARAMS] ... > reports/experiments/thought_probe/read_thoughts.json

Which intermediate results can be read from the continuous thoughts?

Each problem's reasoning steps have results r_1 … r_n (the value after `=`; n = 2–4 on
`gsm`). For each thought position k and step j, a linear classifier (multinomial
logistic regression on the 128-wide state, fitted on training problems, scored on the
500 `gsm` test problems) is asked for r_j. Three readings per (k, j):
  probe  the linear classifier's test accuracy (the exact value, in any direction)
  r2     test R² of a ridge regression of r_j's numeric value on the state (an
         approximate value: how much of its variance the state explains linearly)
  r2_beyond_start  the same for what is left of r_j after a linear fit on the question's
         first number (the start value, which every state can copy from the question):
         what the state holds of the computation itself
  head   how often the model's own output head puts r_j first (as the Coconut paper reads
         its thoughts; numbers are single tokens here)
and two floors: `majority`, the accuracy of always answering the commonest r_j, and
`r2_start`, the R² of that linear fit of r_j on the start value alone.

Positions: for a model with thoughts (`coconut`, `no_curriculum`), the six states fed
back as thoughts (1 = the state at <bot>, k = the state at thought k−1; with
`thought_feedback: soft_token` the input is the hook's mix of embeddings, the state read
is the hidden state it came from), then the state at <eot>, the last position before the
answer; for a model without (`no_thought`,
`pause_as_thought`), the states at the last two prompt positions (<bot> or the last
<pause>, then <eot>).

  usage (repository root, after `dvc repro`):
    python scripts/read_thoughts.py coconut:models/coconut/coconut no_thought:models/coconut/no_thought \\
        > reports/experiments/thought_probe/read_thoughts.json
  (VARIANT:MODEL_DIR:PARAMS reads a trial's model with the params it was trained with)
"""

import json
import os
import re
import sys
from pathlib import Path

import torch

from latent_reasoning import coconut
from latent_reasoning.config import load_params
from latent_reasoning.generation import generate
from latent_reasoning.modeling import load_checkpoint
from latent_reasoning.schema import read_jsonl, step_result
from latent_reasoning.tokenizer import EOT, load_tokenizer

NUMBER_RE = re.compile(r"\d+")
N_TRAIN = 4000  # training problems the classifiers are fitted on


def last_states(model, rows):
    """Last-layer states of rows of input embeddings (each (length, hidden)), left-padded."""
    width = max(len(r) for r in rows)
    embeds = torch.zeros(len(rows), width, rows[0].shape[1])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        embeds[i, width - len(r):], mask[i, width - len(r):] = r, 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                 output_hidden_states=True).hidden_states[-1]


@torch.no_grad()
def states(model, tokenizer, examples, variant, cfg, batch_size):
    """(problems, positions, hidden) last-layer states at the positions read."""
    run = coconut.inference_kwargs(model, variant, cfg.final_stage, cfg)  # as the pipeline evaluates it
    prompts = [run["prompt_fn"](tokenizer, ex) for ex in examples]
    n_latents, feedback = run["n_latents"], run["thought_fn"]
    eot = tokenizer.convert_tokens_to_ids(EOT)
    embed = model.get_input_embeddings()
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start: start + batch_size]
        if n_latents is None:  # the prompt ends "<bot> [<pause> ...] <eot>": read its last two columns
            out.append(last_states(model, [embed(torch.tensor(p)) for p in chunk])[:, -2:])
            continue
        # the thoughts' hidden states, as generation computes them; then the state at <eot>,
        # from one pass over question, the fed-back thoughts and <eot> as inputs
        thoughts = torch.stack(generate(model, chunk, max_new_tokens=1, eos_id=tokenizer.eos_token_id,
                                        pad_id=tokenizer.pad_token_id, n_latents=[n_latents] * len(chunk),
                                        eot_id=eot, thought_fn=feedback, return_thoughts=True).thoughts)
        fed = feedback(thoughts) if feedback is not None else thoughts
        rows = [torch.cat([embed(torch.tensor(p)), t, embed(torch.tensor([eot]))]) for p, t in zip(chunk, fed)]
        h = last_states(model, rows)
        # the pass recomputes what generation computed: its state at the fifth thought is the sixth fed back
        assert torch.allclose(h[:, -3], thoughts[:, -1], atol=1e-3), "one pass disagrees with generation"
        out.append(torch.cat([thoughts, h[:, -1:]], 1))
    return torch.cat(out)


def step_results(examples):
    return [[step_result(step) for step in ex.steps] for ex in examples]


def fit_probe(x, y, n_classes, weight_decay=1e-3, iters=200):
    """Multinomial logistic regression, standardised inputs, L-BFGS."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")
    xs = (x - mean) / std

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ w + b, y) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda z: ((z - mean) / std @ w + b).argmax(-1)


def fit_ridge(x, y, alpha=1.0):
    """Ridge regression of a number on the standardised state (closed form)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = torch.cat([(x - mean) / std, torch.ones(len(x), 1)], 1)
    w = torch.linalg.solve(xs.T @ xs + alpha * torch.eye(xs.shape[1]), xs.T @ y)
    return lambda z: torch.cat([(z - mean) / std, torch.ones(len(z), 1)], 1) @ w


def r_squared(predicted, y):
    return 1 - ((predicted - y) ** 2).sum().item() / ((y - y.mean()) ** 2).sum().item()


def read(model, tokenizer, train, test, variant, cfg, batch_size):
    h_train = states(model, tokenizer, train, variant, cfg, batch_size)
    h_test = states(model, tokenizer, test, variant, cfg, batch_size)
    r_train, r_test = step_results(train), step_results(test)
    head = model.get_output_embeddings()
    n_steps = max(len(r) for r in r_test)
    table = {"probe": [], "r2": [], "r2_beyond_start": [], "head": [], "majority": [], "r2_start": []}
    start_train = torch.tensor([[float(NUMBER_RE.search(ex.question).group())] for ex in train])
    start_test = torch.tensor([[float(NUMBER_RE.search(ex.question).group())] for ex in test])
    for j in range(n_steps):
        tr = [i for i, r in enumerate(r_train) if len(r) > j]
        te = [i for i, r in enumerate(r_test) if len(r) > j]
        values = sorted({r_train[i][j] for i in tr} | {r_test[i][j] for i in te})
        cls = {v: c for c, v in enumerate(values)}
        y_tr = torch.tensor([cls[r_train[i][j]] for i in tr])
        y_te = torch.tensor([cls[r_test[i][j]] for i in te])
        token_te = torch.tensor([tokenizer.convert_tokens_to_ids(r_test[i][j]) for i in te])
        commonest = torch.bincount(y_tr, minlength=len(values)).argmax()
        table["majority"].append(round((y_te == commonest).float().mean().item(), 4))
        v_tr = torch.tensor([float(r_train[i][j]) for i in tr])
        v_te = torch.tensor([float(r_test[i][j]) for i in te])
        from_start = fit_ridge(start_train[tr], v_tr, alpha=0.0)
        e_tr, e_te = v_tr - from_start(start_train[tr]), v_te - from_start(start_test[te])
        table["r2_start"].append(round(r_squared(from_start(start_test[te]), v_te), 4))
        probe_row, r2_row, rest_row, head_row = [], [], [], []
        for k in range(h_train.shape[1]):
            predict = fit_probe(h_train[tr, k], y_tr, len(values))
            with torch.no_grad():
                probe_row.append(round((predict(h_test[te, k]) == y_te).float().mean().item(), 4))
                r2_row.append(round(r_squared(fit_ridge(h_train[tr, k], v_tr)(h_test[te, k]), v_te), 4))
                rest_row.append(round(r_squared(fit_ridge(h_train[tr, k], e_tr)(h_test[te, k]), e_te), 4))
                head_row.append(round((head(h_test[te, k]).argmax(-1) == token_te).float().mean().item(), 4))
        table["probe"].append(probe_row)
        table["r2"].append(r2_row)
        table["r2_beyond_start"].append(rest_row)
        table["head"].append(head_row)
    return table


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    torch.manual_seed(0)
    params = load_params("params.yaml")
    tokenizer = load_tokenizer("models/tokenizer")
    train = read_jsonl(Path("data/prepared/train.jsonl"))[:N_TRAIN]
    test = read_jsonl(Path("data/prepared/test_gsm.jsonl"))
    results = {"n_train": len(train), "n_test": len(test),
               "rows": "step j (1 = the first step's result)", "columns": "position read"}
    for spec in sys.argv[1:]:
        variant, model_dir, *own_params = spec.split(":")
        # a trial's model comes with the params it was trained with (its thought_feedback)
        cfg = load_params(own_params[0]).coconut if own_params else params.coconut
        model = load_checkpoint(model_dir, model_dir)
        table = read(model, tokenizer, train, test, variant, cfg, params.evaluate.batch_size)
        results[spec] = table
        print(spec, file=sys.stderr)
        for name, rows in table.items():
            print(f"  {name}: {rows}", file=sys.stderr)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
