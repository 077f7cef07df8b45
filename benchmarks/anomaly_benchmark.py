"""Anomaly benchmark: odd inputs against natural photos, and damaged photo crops against the same crops whole.

Builds its images with `anomaly_set` (fixed seeds), writes them as 8-bit PNG files and scores them through the
product's own path, `denoiser.pipeline.score_only` (what `denoise score` runs). Damaged crops are scored with
`Scorer.score(..., heatmap=True)`, the call that `score_only` makes for `--heatmaps`, and their anomaly maps are
compared with the pasted masks (pixel AUROC). Every scorer given is measured on the same files in one run.

    python benchmarks/anomaly_benchmark.py ../shared/data --split test -S scorer -S old-scorer.keras
    python benchmarks/anomaly_benchmark.py ../shared/data --split validation -S scorer

`validation` takes the photos from the training folders' files that `python -m denoise_train scorer --preset photo`
never fits on (every 5th file) and the photos that installed packages ship (`anomaly_set.gathered_files`: install
scikit-image and Debian's plasma-workspace-wallpapers, lomiri-wallpapers-16.04 and -20.04 for all 35), and draws
the odd kinds with another seed; `test`
takes set12/, mcmaster/ and photos/.
Decide on validation; report test.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly_set as S  # noqa: E402

SEEDS = {"validation": 1001, "test": 2001}


def split_files(data: Path, split: str) -> list[Path]:
    """The split's photos: the test folders, or the scorer's left-out training files and the packaged photos."""
    from denoise_train.data import list_images
    from denoise_train.scorer import validation_files

    if split == "test":
        return S.test_files(data)
    files = [p for name in ("train400", "cbsd432") for p in validation_files(list_images(data / name))]
    return files + S.gathered_files()


def build(data: Path, split: str, odd_count: int, crops: int, damaged_per_file: int):
    """The split's samples and damaged crops."""
    files = split_files(data, split)
    seed = SEEDS[split]
    samples = S.normal_samples(files, crops, seed) + S.odd_samples(odd_count, seed + 1, data / "fashion-mnist")
    damaged_files = files if split == "test" else files[::2]
    return samples, S.damaged_samples(damaged_files, damaged_per_file, seed + 2)


def write_image(path: Path, pixels: np.ndarray) -> None:
    """Save 8-bit H x W x 1 or 3 pixels as PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)


def write(samples: list, damaged: list, folder: Path) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Write every image as PNG; returns the sample paths and the (whole, damaged) crop paths."""
    paths, pairs = [], []
    for i, sample in enumerate(samples):
        paths.append(folder / sample.group / f"{i:05d}-{sample.kind.replace(':', '')}.png")
        write_image(paths[-1], sample.pixels)
    for i, item in enumerate(damaged):
        pair = (folder / "crops" / f"{i:04d}-whole.png", folder / "crops" / f"{i:04d}-{item.kind}.png")
        write_image(pair[0], item.normal)
        write_image(pair[1], item.damaged)
        pairs.append(pair)
    return paths, pairs


def score_files(scorer, paths: list[Path], out: Path) -> list[dict]:
    """Records of `denoise score` for the files, in order."""
    from denoiser.pipeline import Job, Options, score_only

    jobs = [Job(path, out / path.name) for path in paths]
    return list(score_only(jobs, scorer, Options()))


def measure(spec: str, samples: list, damaged: list, paths: list[Path], pairs: list, out: Path) -> dict:
    """One scorer's figures on the written set."""
    from sklearn.metrics import roc_auc_score

    from denoiser.anomaly import Scorer
    from denoiser.imageio import read_image

    scorer = Scorer.load(spec)
    started = time.perf_counter()
    records = score_files(scorer, paths, out)
    seconds = time.perf_counter() - started
    raw = np.array([r.raw_score for r in records])
    flagged = np.array([bool(r.anomalous) for r in records])
    odd = np.array([s.group == "odd" for s in samples])
    by = defaultdict(list)
    for sample, flag in zip(samples, flagged):
        by[(sample.group, sample.kind)].append(flag)
        if sample.group == "normal":
            by[("source", source_of(sample.source))].append(flag)
    whole, broken, heat = [], [], []
    for (a, b), _ in zip(pairs, damaged):
        whole.append(scorer.score(read_image(a).pixels)[0].raw)
        result, heatmap = scorer.score(read_image(b).pixels, heatmap=True)
        broken.append(result.raw)
        heat.append(heatmap)
    kinds = np.array([item.kind for item in damaged])
    truth = np.concatenate([item.mask.ravel() for item in damaged])
    return {
        "scorer": spec,
        "images": len(records),
        "ms_per_image": round(1000 * seconds / len(records), 1),
        "auroc": roc_auc_score(odd, raw),
        "flagged_normal": float(flagged[~odd].mean()),
        "flagged_odd": float(flagged[odd].mean()),
        "flagged": {f"{group} {kind}": float(np.mean(v)) for (group, kind), v in sorted(by.items())},
        "damage_auroc": roc_auc_score(np.r_[np.zeros(len(whole)), np.ones(len(broken))], np.r_[whole, broken]),
        "damage_auroc_by_kind": {
            k: roc_auc_score(
                np.r_[np.zeros((kinds == k).sum()), np.ones((kinds == k).sum())],
                np.r_[np.array(whole)[kinds == k], np.array(broken)[kinds == k]],
            )
            for k in S.DAMAGES
        },
        "pixel_auroc": roc_auc_score(truth, np.concatenate([h.ravel() for h in heat])),
    }


def source_of(name: str) -> str:
    """A photo's folder, from its `folder/file` source."""
    return name.split("/")[0]


def report(result: dict) -> str:
    """One scorer's figures as text."""
    lines = [
        f"scorer {result['scorer']}: {result['images']} images, {result['ms_per_image']} ms per image",
        f"  odd vs normal AUROC {result['auroc']:.4f}   flagged normal {result['flagged_normal']:.2%}   "
        f"flagged odd {result['flagged_odd']:.2%}",
    ]
    lines += [f"    {name:<22} flagged {value:7.2%}" for name, value in result["flagged"].items()]
    lines.append(
        f"  damage AUROC {result['damage_auroc']:.4f} ("
        + ", ".join(f"{k} {v:.4f}" for k, v in result["damage_auroc_by_kind"].items())
        + f")   pixel AUROC {result['pixel_auroc']:.4f}"
    )
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(sorted(SEEDS)), default="validation")
@click.option(
    "-S", "--scorer", "scorers", multiple=True, default=["scorer"], help="Scorer file or shipped name; repeat."
)
@click.option("--odd", "odd_count", type=int, default=20, help="Images of each odd kind.")
@click.option("--crops", type=int, default=2, help="Random crops of each photo besides the whole.")
@click.option("--damaged", type=int, default=3, help="Damaged crops of each photo.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None, help="Write the figures here as JSON.")
def main(data: Path, split: str, scorers: tuple, odd_count: int, crops: int, damaged: int, out: str | None) -> None:
    """Build the split's set, score it with every scorer, print the figures."""
    samples, broken = build(data, split, odd_count, crops, damaged)
    counts = defaultdict(int)
    for sample in samples:
        counts[sample.group] += 1
    click.echo(
        f"{split} split: {counts['normal']} normal photos, {counts['odd']} odd inputs "
        f"({odd_count} of each of {len(S.ODD_KINDS)} kinds), {len(broken)} damaged crops"
    )
    with tempfile.TemporaryDirectory() as folder:
        paths, pairs = write(samples, broken, Path(folder))
        results = [measure(spec, samples, broken, paths, pairs, Path(folder) / "scored") for spec in scorers]
    for result in results:
        click.echo(report(result))
    if out:
        Path(out).write_text(json.dumps({"split": split, "command": " ".join(sys.argv), "results": results}, indent=2))


if __name__ == "__main__":
    main()
