"""Where a `matte` watermark remover's error comes from: its opacity map or its colour, inside the text or not.

    python benchmarks/matte_error.py ../shared/data/set12 [-m watermark-gray] [--opacity 40]

Draws one held-out text watermark per image (the eval's font and phrases) and inverts the blend four ways:
with the model's opacity and colour (the model's own output), with the true opacity and the model's colour,
with the model's opacity and the true colour, and with both true (what 8-bit rounding alone leaves). It also
splits the model's squared error between the text (opacity > 1% of the watermark's), a 4-px band around it
and the rest of the picture. Whole images run at once, padded to the model's size multiple.
"""

from __future__ import annotations

from pathlib import Path

import click
import keras
import numpy as np

from denoiser.artifact import load_artifact, resolve_model
from denoiser.evaluate import load_clean
from denoiser.noise import psnr, watermark_with_matte


def matte_and_colour(probe: keras.Model, marked: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlay opacity and colour for one whole image, from a probe of a matte model's logit and colour layers."""
    height, width = marked.shape[:2]
    pad = ((0, -height % multiple), (0, -width % multiple), (0, 0))
    logit, colour = (
        np.asarray(t)[0, :height, :width] for t in probe.predict(np.pad(marked, pad, "reflect")[None], verbose=0)
    )
    return 1.0 / (1.0 + np.exp(-logit)), colour


def unblend(marked: np.ndarray, opacity: np.ndarray, colour) -> np.ndarray:
    """The picture under an overlay of this opacity and colour:  (marked - a c) / (1 - a)."""
    return np.clip((marked - opacity * colour) / np.maximum(1.0 - opacity, 1e-3), 0.0, 1.0)


def error_split(clean: np.ndarray, restored: np.ndarray, alpha: np.ndarray, opacity: float) -> np.ndarray:
    """Squared error (8-bit levels², as a share of the image's mean) on the text, a 4-px band round it, the rest."""
    import cv2

    text = alpha[..., 0] > 0.01 * opacity
    band = (cv2.dilate(text.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~text
    error = np.sum(((restored - clean) * 255.0) ** 2, axis=-1)
    return np.array([error[part].sum() for part in (text, band, ~text & ~band)]) / error.size


@click.command(context_settings={"show_default": True})
@click.argument("clean", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-m", "--model", "model_path", default="watermark-gray", help="A matte model: a path or a shipped name.")
@click.option("--opacity", type=float, default=40.0, help="Watermark opacity in percent.")
@click.option("-s", "--seed", type=int, default=0)
def main(clean: Path, model_path: str, opacity: float, seed: int) -> None:
    """Split a matte model's watermark error into its sources."""
    artifact = load_artifact(resolve_model(model_path))
    model = artifact.model
    probe = keras.Model(model.input, [model.get_layer("matte_logit").output, model.get_layer("overlay_colour").output])
    rng = np.random.default_rng(seed)
    columns = ("input", "model", "true matte", "true colour", "both true")
    rows, splits = [], []
    for name, image in load_clean(clean).items():
        marked, alpha = watermark_with_matte(image, opacity, rng)
        covered = alpha[..., 0] > 0.3 * opacity / 100.0
        colour = np.median((marked - image * (1.0 - alpha))[covered] / alpha[covered], axis=0)
        matte, predicted_colour = matte_and_colour(probe, marked, artifact.align)
        outputs = (
            marked,
            unblend(marked, matte, predicted_colour),
            unblend(marked, alpha, predicted_colour),
            unblend(marked, matte, colour),
            unblend(marked, alpha, colour),
        )
        rows.append([psnr(image, output) for output in outputs])
        splits.append(error_split(image, outputs[1], alpha, opacity / 100.0))
        click.echo(f"{name}: " + "  ".join(f"{c} {v:.2f}" for c, v in zip(columns, rows[-1])))
    click.echo("mean PSNR: " + "  ".join(f"{c} {v:.2f}" for c, v in zip(columns, np.mean(rows, axis=0))))
    text, band, rest = np.mean(splits, axis=0)
    click.echo(
        f"model's mean squared error (8-bit levels²): text {text:.2f}, 4-px band round it {band:.2f}, "
        f"elsewhere {rest:.2f}"
    )


if __name__ == "__main__":
    main()
