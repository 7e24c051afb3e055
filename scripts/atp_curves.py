"""ATP-Latent's imitation run against Coconut's, step by step, from the pipeline's DVCLive
logs (committed under reports/train/): validation accuracy, the main model's CE, and
ATP-Latent's own terms (step decoder CE, stop CE, KL), with the curriculum's stage
boundaries. Writes one PNG (default reports/figures/atp_curves.png).

    python scripts/atp_curves.py [OUT_PNG]"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

ATP = Path("reports/train/atp/atp_vae/plots/metrics")
COCONUT = Path("reports/train/coconut/coconut/plots/metrics")


def series(path: Path) -> tuple[list[int], list[float]]:
    if not path.exists():
        sys.exit(f"{path}: missing (run `dvc repro` first, or check out the committed logs)")
    rows = list(csv.DictReader(path.open(), delimiter="\t"))
    key = [k for k in rows[0] if k != "step" and k != "timestamp"][0]
    return [int(r["step"]) for r in rows], [float(r[key]) for r in rows]


def stage_starts() -> list[int]:
    """The steps at which the curriculum moves to its next stage (params.yaml's coconut
    section: stages 1 .. max_latent_stage of steps_per_stage steps, then the final stage)."""
    c = yaml.safe_load(open("params.yaml"))["coconut"]
    return [k * c["steps_per_stage"] for k in range(1, c["max_latent_stage"] + 1)]


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/figures/atp_curves.png")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for name, root in (("coconut", COCONUT), ("atp_vae", ATP)):
        ax.plot(*series(root / "val/accuracy.tsv"), marker="o", ms=3, label=name)
    ax.set(title="validation accuracy (300 problems)", xlabel="training step", ylabel="accuracy")
    ax = axes[1]
    ax.plot(*series(COCONUT / "train/loss.tsv"), label="coconut: main CE", alpha=0.8)
    ax.plot(*series(ATP / "train/ce.tsv"), label="atp_vae: main CE", alpha=0.8)
    ax.plot(*series(ATP / "train/decoder.tsv"), label="atp_vae: step decoder CE", alpha=0.8)
    ax.plot(*series(ATP / "train/stop.tsv"), label="atp_vae: stop CE", alpha=0.8)
    ax.set(title="training losses", xlabel="training step", ylabel="cross-entropy", yscale="log")
    ax = axes[2]
    ax.plot(*series(ATP / "train/kl.tsv"), color="tab:red", label="atp_vae: KL to N(0, I)")
    ax.set(title="KL (mean over dimensions)", xlabel="training step", yscale="log")
    for ax in axes:
        for s in stage_starts():
            ax.axvline(s, color="grey", lw=0.6, ls=":")
        ax.legend(fontsize=8)
    fig.suptitle("ATP-Latent imitation against Coconut, seed 0 of the pipeline (dotted: where the curriculum moves to its next stage)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
