"""Options shared by the commands that run a model."""

from __future__ import annotations

import click

from denoiser.engine import DEVICES, ENSEMBLES, PRECISIONS, TILE, TILE_OVERLAPS, Settings
from denoiser.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS


def _apply(command, options):
    for option in reversed(options):
        command = option(command)
    return command


def tiling_options(command):
    """Add the tiling, batching, device and precision options."""
    return _apply(command, [
        click.option("-t", "--tile", type=click.IntRange(16), default=None,
                     help="Longest tile side in pixels (raised to twice the overlap if smaller); each image is cut "
                          f"into as few tiles as this allows, each fitted to the image to 16 px. Default: {TILE}, "
                          f"or {TILE_OVERLAPS} overlaps where that is more."),
        click.option("--overlap", type=click.IntRange(0), default=None,
                     help="Tile overlap in pixels. Default: from the seam radius in the model's card."),
        click.option("-b", "--batch-size", type=click.IntRange(1), default=Settings().batch_size, show_default=True,
                     help="Tiles of TILE x TILE per batch; smaller tiles fill a batch of the same area."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     help="auto = float16 on a GPU, bfloat16 on a CPU with bf16 units where a timed convolution "
                          "runs faster in it, else float32. int8 = the model's int8 graph on the CPU (ONNX Runtime): "
                          "faster, slightly less clean."),
        click.option("-e", "--ensemble", type=click.Choice([str(n) for n in ENSEMBLES]),
                     default=str(Settings().ensemble), show_default=True, callback=lambda ctx, param, value: int(value),
                     help="Run each tile in this many flips and quarter turns and average the outputs turned back "
                          "(self-ensemble): cleaner output for this many times the work."),
    ])


def limit_options(command):
    """Add the input limits: pixels and bytes per file."""
    return _apply(command, [
        click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
                     help="Refuse images with more pixels than this."),
        click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT_MAX_BYTES, show_default=True,
                     help="Refuse files larger than this many bytes, before reading them."),
    ])


def engine_options(command):
    """Add the model option, the tiling options and the input limits."""
    return _apply(limit_options(tiling_options(command)), [
        click.option("-m", "--model", default=None, metavar="PATH|NAME",
                     help="Model file or shipped name (gray, gray-fast, color, watermark-gray). "
                          "Default: gray or color per image."),
    ])


def scorer_options(command):
    """Add the scorer and anomaly-map options."""
    return _apply(command, [
        click.option("-S", "--scorer", default=None, metavar="PATH|scorer",
                     help="Anomaly scorer file (python -m denoise_train scorer). Default: the shipped scorer."),
        click.option("-H", "--heatmaps", is_flag=True,
                     help="Write each image's anomaly map beside its output as NAME.heatmap.png."),
    ])


def settings_from(options: dict) -> Settings:
    """Engine settings from parsed options."""
    return Settings(options["tile"], options["overlap"], options["batch_size"], options["device"], options["precision"],
                    options["ensemble"])
