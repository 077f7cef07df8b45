"""Probe: does the shipped denoiser's residual find local damage that the photo scorer misses? Validation only.

The residual is |input - denoised input| (the shipped `gray` or `color` model, float32), averaged over channels and
over 8 x 8 blocks; its `excess` is the largest block over the 90th percentile of the blocks, so that a noisy photo,
whose residual is high everywhere, keeps a low excess. Its scale is the excess's 99th percentile on held-out crops
of the photo scorer's fitting files (160-256 px, clean or noisy as `denoise_train.scorer` trains), as the scorer's
own components are scaled. Measured on the validation damaged crops of `anomaly_benchmark.py --split validation
--damaged 2` (same files and seed): the shipped scorer's raw score and damage component, the excess, and the larger
of each of those two and the scaled excess, which is what a fifth component would give. `--scratch-blur SIGMA`
blurs each scratch (the difference it makes) by a Gaussian of SIGMA pixels, as a scanner's optics would: the
benchmark draws them without anti-aliasing.

    python benchmarks/anomaly_residual_probe.py ../shared/data [--scratch-blur 0.8]
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly_set as S  # noqa: E402
from anomaly_benchmark import SEEDS, split_files  # noqa: E402
from anomaly_encoder_probe import auroc, training_crops  # noqa: E402

BLOCK = 8


def excess(models, pixels: np.ndarray) -> float:
    """The largest 8 x 8 block mean of the denoiser's residual over the blocks' 90th percentile."""
    residual = np.abs(pixels - models.for_channels(pixels.shape[-1]).denoise(pixels)).mean(axis=-1)
    blocks = cv2.blur(residual, (BLOCK, BLOCK))
    return float(blocks.max() / (np.percentile(blocks, 90) + 1e-4))


def excess_scale(models, data: Path) -> float:
    """The excess's 99th percentile on one held-out crop of each fitting file."""
    from denoise_train.data import list_images
    from denoise_train.scorer import fitting_files

    files = [p for name in ("train400", "cbsd432") for p in fitting_files(list_images(data / name))]
    crops = training_crops(files[1::2], 1, np.random.default_rng(0))
    return float(np.quantile([excess(models, crop.astype(np.float32)) for crop in crops], 0.99))


def soften(item: S.Damaged, sigma: float) -> S.Damaged:
    """A scratched crop with its scratch blurred by a Gaussian of sigma pixels; other damage as it is."""
    if item.kind != "scratch" or not sigma:
        return item
    normal = item.normal.astype(np.float32)
    line = cv2.GaussianBlur(item.damaged.astype(np.float32) - normal, (0, 0), sigma)
    return item._replace(damaged=np.clip(np.rint(normal + line.reshape(normal.shape)), 0, 255).astype(np.uint8))


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--scratch-blur", type=float, default=0.0, help="Gaussian sigma in pixels for each scratch")
def main(data: Path, scratch_blur: float) -> None:
    """Print validation damage AUROCs of the residual's excess, alone and beside the photo scorer."""
    from denoiser.engine import Settings
    from denoiser.pipeline import Models

    models = Models(Settings(precision="float32"))
    scorer = models.scorer
    scale = excess_scale(models, data)
    damaged = S.damaged_samples(split_files(data, "validation")[::2], 2, SEEDS["validation"] + 2)
    damaged = [soften(item, scratch_blur) for item in damaged]
    rows = []
    for item in damaged:
        row = {}
        for name, pixels in (("whole", item.normal), ("damaged", item.damaged)):
            pixels = pixels.astype(np.float32) / 255
            components, _ = scorer.components(pixels)
            found = excess(models, pixels) / scale
            damage = components["damage"] / scorer.scales["damage"]
            raw = scorer.raw(components)
            row[name] = {
                "shipped": raw,
                "damage": damage,
                "excess": found,
                "damage+excess": max(damage, found),
                "shipped+excess": max(raw, found),
            }
        rows.append((item.kind, row))
    click.echo(f"{len(damaged)} validation damaged crops; excess scale {scale:.3f} (99th percentile, fitting crops)")
    for rule in rows[0][1]["whole"]:
        figures = {}
        for kind in ("all", *S.DAMAGES):
            chosen = [row for k, row in rows if kind in ("all", k)]
            figures[kind] = auroc([r["whole"][rule] for r in chosen], [r["damaged"][rule] for r in chosen])
        click.echo(f"  {rule:<15} " + "  ".join(f"{key} {value:.3f}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
