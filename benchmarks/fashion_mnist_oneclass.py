"""The Fashion-MNIST one-class protocol: for each class, fit a scorer on its training images only,
score all 10,000 test images, and report the AUROC for "not this class" and the flagged rate of the
class's own test images against the configured false-positive rate.

    python benchmarks/fashion_mnist_oneclass.py ../shared/data/fashion-mnist --out fmnist.json
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@click.option("-p", "--preset", default="conv-ae", help="Autoencoder preset (python -m denoise_train scorer --help).")
@click.option("-e", "--epochs", type=int, default=4, help="Epochs over the four turns of every image.")
@click.option("-w", "--weights", default=None, help="Component weights of the raw score. Default: the recipe's.")
@click.option("--fpr", type=float, default=0.01, help="Configured false-positive rate.")
@click.option("-c", "--classes", default="0,1,2,3,4,5,6,7,8,9")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None, help="Write the results here as JSON.")
def main(data: str, preset: str, epochs: int, weights: str, fpr: float, classes: str, out: str | None) -> None:
    """Run the protocol and print AUROC per class and component, the mean, and the flagged rates."""
    from sklearn.metrics import roc_auc_score

    from denoise_train.data import load_idx
    from denoise_train.scorer import ScorerRecipe, fit_scorer, measure_all

    test, labels = load_idx(data, "t10k")
    rows = []
    for label in map(int, classes.split(",")):
        started = time.time()
        normal, _ = load_idx(data, "train", label)
        recipe = ScorerRecipe(data, "", preset=preset, epochs=epochs, weights=weights, fpr=fpr, label=label)
        scorer = fit_scorer(normal, recipe).scorer
        components, _ = measure_all(scorer, test)
        raw = scorer.raw(components)
        anomalous = labels != label
        row = {
            "class": label,
            "auroc": roc_auc_score(anomalous, raw),
            "components": {k: roc_auc_score(anomalous, v) for k, v in components.items()},
            "flagged_normal": float(np.mean(raw[~anomalous] >= scorer.calibration.threshold)),
            "flagged_anomalous": float(np.mean(raw[anomalous] >= scorer.calibration.threshold)),
            "seconds": round(time.time() - started, 1),
        }
        rows.append(row)
        click.echo(
            f"class {label}: AUROC {row['auroc']:.4f}  flagged normal {row['flagged_normal']:.2%}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in row["components"].items())
            + f"  ({row['seconds']} s)"
        )
    summary = {
        "command": "python " + shlex.join(sys.argv),
        "preset": preset,
        "epochs": epochs,
        "weights": recipe.component_weights,
        "fpr": fpr,
        "mean_auroc": float(np.mean([r["auroc"] for r in rows])),
        "mean_component_auroc": {k: float(np.mean([r["components"][k] for r in rows])) for k in rows[0]["components"]},
        "flagged_normal": float(np.mean([r["flagged_normal"] for r in rows])),
        "classes": rows,
    }
    click.echo(table(summary))
    if out:
        Path(out).write_text(json.dumps(summary, indent=2) + "\n")


def table(summary: dict) -> str:
    """The results as a Markdown table."""
    names = list(summary["mean_component_auroc"])
    lines = ["| class | AUROC | flagged normal | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for r in summary["classes"]:
        lines.append(
            f"| {r['class']} | {r['auroc']:.4f} | {r['flagged_normal']:.2%} | "
            + " | ".join(f"{r['components'][k]:.4f}" for k in names)
            + " |"
        )
    lines.append(
        f"| **mean** | **{summary['mean_auroc']:.4f}** | {summary['flagged_normal']:.2%} | "
        + " | ".join(f"{summary['mean_component_auroc'][k]:.4f}" for k in names)
        + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
