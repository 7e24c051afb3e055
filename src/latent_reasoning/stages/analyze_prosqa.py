"""Stage `analyze` (the graph task's pipeline only): the Coconut paper's two analyses of ProsQA.

1. Path classes of generated language (prosqa.path_class: correct path, longer path,
   hallucination, wrong target, none), with the answer's correctness: CoT-SFT's reasoning,
   and Coconut's when it is made to switch to language after k thoughts (k = 0 .. the
   most it was trained with): the less it writes, the more it has searched in latent space.
2. The latent-BFS probe: after k thoughts and <eot>, the model starts the next step in
   language ("Tom is a" after none, "Every" after k >= 1); the probability it gives each
   concept of the graph as the next word, renormalised over the graph's concepts, is that
   node's value. The frontier after k thoughts is the nodes k steps from the root (1 for
   k = 0). Reported per k: the value mass on the frontier, and the mean value of frontier
   nodes that still reach the target on a shortest path against those that do not (the
   paper's reading: the thoughts hold several frontier nodes, weighted by promise).

Writes reports/prosqa/analysis.json and analysis.md (`--out-dir`)."""

import argparse
import json
from pathlib import Path

import torch

from .. import coconut, prosqa
from ..config import load_params
from ..evaluation import evaluate
from ..formats import prompt_text
from ..latent import latent_forward, layout
from ..modeling import load_checkpoint
from ..schema import read_jsonl
from ..tokenizer import BOT, EOS, EOT, LATENT, LATENT_TOKENS, PAD, load_tokenizer


def reasoning(output: str) -> str:
    """The language part of a generated output: before `###`, special tokens dropped."""
    text = output.split("###")[0]
    for special in (*LATENT_TOKENS, EOS, PAD):
        text = text.replace(special, " ")
    return " ".join(text.split())


def class_shares(predictions: list[dict], examples) -> dict:
    counts = {f"{c}/{ok}": 0 for c in prosqa.PATH_CLASSES for ok in ("correct", "incorrect")}
    for p, ex in zip(predictions, examples):
        c = prosqa.path_class(reasoning(p["output"]), ex.meta)
        counts[f"{c}/{'correct' if p['correct'] else 'incorrect'}"] += 1
    return {k: v / len(predictions) for k, v in counts.items()}


def to_target(meta: dict) -> list[int | None]:
    """Each node's distance to the target (None: it does not reach it)."""
    reverse = [[b, a] for a, b in meta["edges"]]
    return prosqa.distances(len(meta["idx_to_symbol"]), reverse, meta["target"])


@torch.no_grad()
def probe(model, tok, examples, k: int, cfg) -> dict:
    """Values of the frontier nodes after k thoughts (see the module's docstring)."""
    ids = tok.convert_tokens_to_ids
    prefixes = [tok(prompt_text(ex))["input_ids"] + [ids(BOT)] for ex in examples]
    starts = [f" {ex.meta['idx_to_symbol'][ex.meta['root']]} is a" if k == 0 else " Every" for ex in examples]
    suffixes = [[ids(EOT)] + tok(s.lstrip(), add_special_tokens=False)["input_ids"] for s in starts]
    # logits[:, t] predict suffix[t]: one padding token more makes the last real one's
    # prediction (the next word) part of them (causal: the padding changes nothing before it)
    padded = [s + [tok.pad_token_id] for s in suffixes]
    batch = layout(prefixes, [k] * len(examples), padded, [[-100] * len(s) for s in padded], ids(LATENT),
                   tok.pad_token_id, n_slots=max(k, 1))
    out = latent_forward(model, batch, thought_fn=coconut.thought_fn(model, cfg))
    on_frontier, leads, off, right, wrong = [], [], [], [], []
    for i, ex in enumerate(examples):
        m = ex.meta
        dist, left = prosqa.distances(len(m["idx_to_symbol"]), m["edges"], m["root"]), to_target(m)
        concepts = [v for v in range(len(m["idx_to_symbol"])) if v != m["root"]]
        first = [tok(" " + m["idx_to_symbol"][v], add_special_tokens=False)["input_ids"][0] for v in concepts]
        logits = out.logits[i, len(suffixes[i])].float()  # the next word after the suffix
        value = dict(zip(concepts, torch.softmax(logits[first], dim=0).tolist()))
        depth = max(k, 1)
        frontier = [v for v in concepts if dist[v] == depth]
        on_frontier.append(sum(value[v] for v in frontier))
        # the two options, whatever the frontier: a model that splits its value evenly
        # between them has not found which one the entity reaches
        right.append(value[m["target"]])
        wrong.append(value[m["neg_target"]])
        for v in frontier:  # still on a shortest path to the target?
            (leads if left[v] is not None and dist[v] + left[v] == dist[m["target"]] else off).append(value[v])
    mean = lambda xs: sum(xs) / len(xs) if xs else None
    return {"frontier_value_mass": mean(on_frontier), "value_leading": mean(leads), "value_other": mean(off),
            "frontier_nodes_leading": len(leads), "frontier_nodes_other": len(off),
            "value_right_option": mean(right), "value_wrong_option": mean(wrong)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--cot", default="models/cot")
    ap.add_argument("--coconut", default="models/coconut/coconut")
    ap.add_argument("--limit", type=int, default=200, help="test problems analysed")
    ap.add_argument("--out-dir", default="reports")
    args = ap.parse_args()
    params = load_params(args.params)
    cfg, ev = params.coconut, params.evaluate
    torch.set_num_threads(params.base.threads)
    every = read_jsonl(Path(args.data) / "test_prosqa.jsonl")
    examples = every[: args.limit]
    result = {"problems": len(examples)}
    # what reading edges without planning scores, and a shortcut with no path at all (all
    # test problems, as the results table): the floor a method's accuracy is read against
    result["baselines"] = {"problems": len(every),
                           "random_walk": sum(prosqa.random_walk_accuracy(ex.meta) for ex in every) / len(every),
                           "fewer_out_edges": sum(prosqa.out_degree_guess(ex.meta) for ex in every) / len(every)}

    cot = load_checkpoint(args.cot, "the CoT-SFT model")
    tok = load_tokenizer(args.cot)
    _, preds = evaluate(cot, tok, examples, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens)
    result["cot"] = class_shares(preds, examples)

    model = load_checkpoint(args.coconut, "the Coconut model")
    tok = load_tokenizer(args.coconut)
    result["coconut"], result["probe"] = {}, {}
    for k in range(cfg.max_thoughts + 1):
        kwargs = coconut.inference_kwargs(model, "coconut", cfg.final_stage, cfg)
        kwargs["n_latents"] = k  # switch to language after k thoughts
        metrics, preds = evaluate(model, tok, examples, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                                  **kwargs)
        result["coconut"][str(k)] = {"accuracy": metrics["accuracy"], **class_shares(preds, examples)}
        result["probe"][str(k)] = probe(model, tok, examples, k, cfg)
        print(f"analyze: {k} thoughts: accuracy {metrics['accuracy']:.3f}, probe {result['probe'][str(k)]}")

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "analysis.md").write_text(markdown(result))


def markdown(r: dict) -> str:
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    classes = [f"{c}/{ok}" for c in prosqa.PATH_CLASSES for ok in ("correct", "incorrect")]
    b = r["baselines"]
    lines = [f"# The graph task: path classes and the latent-BFS probe ({r['problems']} test problems)", "",
             f"Reference points on all {b['problems']} test problems, no model: a reader that follows random "
             f"edges from the entity until it reaches an option (a guess at a dead end) scores "
             f"{pct(b['random_walk'])}; answering the option with fewer outgoing edges, {pct(b['fewer_out_edges'])}; "
             "a guess between the two options, 50%.", "",
             "## Path classes of the generated language (share of problems; /correct: the answer is right)", "",
             "| run | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes),
             "| CoT-SFT | " + " | ".join(pct(r["cot"][c]) for c in classes) + " |"]
    for k, v in r["coconut"].items():
        lines.append(f"| Coconut, language after {k} thought(s) (accuracy {pct(v['accuracy'])}) | "
                     + " | ".join(pct(v[c]) for c in classes) + " |")
    lines += ["", "## Latent-BFS probe: the value of frontier nodes after k thoughts", "",
              "| thoughts | value mass on the frontier | mean value, frontier nodes on a shortest path to the target | "
              "mean value, the other frontier nodes | mean value, the right option | mean value, the wrong option |",
              "|---|---|---|---|---|---|"]
    for k, v in r["probe"].items():
        lines.append(f"| {k} | {pct(v['frontier_value_mass'])} | {pct(v['value_leading'])} "
                     f"({v['frontier_nodes_leading']} nodes) | {pct(v['value_other'])} ({v['frontier_nodes_other']} nodes) "
                     f"| {pct(v['value_right_option'])} | {pct(v['value_wrong_option'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
