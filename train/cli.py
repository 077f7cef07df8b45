"""The training command line."""

from __future__ import annotations

import shlex
import sys

import click

from train.presets import PRESETS


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("-d", "--data", "data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of clean training images.")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .keras model (the card goes beside it as .json).")
@click.option("-p", "--preset", type=click.Choice(sorted(PRESETS)), default="unet")
@click.option("-c", "--channels", type=click.Choice(["1", "3"]), default="1", help="1 = gray, 3 = colour.")
@click.option("--depth", type=int, default=10, help="Conv layers (residual preset).")
@click.option("--width", type=int, default=32,
              help="Channels per conv layer (residual preset) or at full resolution (unet preset).")
@click.option("--levels", type=int, default=4, help="Scales, each half the size of the last (unet preset).")
@click.option("-e", "--epochs", type=int, default=10)
@click.option("-s", "--steps", type=int, default=200, help="Batches per epoch.")
@click.option("-b", "--batch-size", type=int, default=32)
@click.option("--patch", type=int, default=64, help="Training patch size in pixels.")
@click.option("--lr", type=float, default=1e-3, help="Peak learning rate (cosine decay).")
@click.option("--sigma-max", type=float, default=50.0, help="Gaussian sigma is uniform in [0, this] (8-bit levels).")
@click.option("--sp-prob", type=float, default=0.2, help="Share of patches with salt-and-pepper instead.")
@click.option("--sp-max", type=float, default=15.0, help="Salt-and-pepper percentage is uniform in [0, this].")
@click.option("--wm-prob", type=float, default=0.0,
              help="Share of patches with a text watermark (20-60% opacity, DejaVu fonts) instead.")
@click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto",
              help="auto = bfloat16 where the CPU has AVX512_BF16.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Back up every epoch here and resume from it when rerun.")
@click.option("--fpr", type=float, default=0.01, help="False-positive rate for the anomaly threshold.")
@click.option("--seed", type=int, default=0)
@click.option("-w", "--workers", type=int, default=1, help="Threads that synthesise training batches.")
def main(**options) -> None:
    """Train a fully convolutional denoising autoencoder on clean images and export it."""
    from train.run import Recipe, train_and_export

    command = "python -m train " + shlex.join(sys.argv[1:])
    recipe = Recipe(**{k: (int(v) if k == "channels" else v) for k, v in options.items()})
    path = train_and_export(recipe, command)
    click.echo(f"exported {path} and {path.with_suffix('.json')}")
