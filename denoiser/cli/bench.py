"""`denoise bench`: how fast a model runs here, per image size, beside the machine's arithmetic ceiling."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import click

from denoiser.cli.options import settings_from, tiling_options


def parse_size(_ctx, _param, values: tuple[str, ...]) -> list[tuple[int, int]]:
    """`WIDTHxHEIGHT` strings to (height, width) pairs."""
    sizes = []
    for value in values:
        width, _, height = value.lower().partition("x")
        if not (width.isdigit() and height.isdigit()) or not (int(width) and int(height)):
            raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, each at least 1")
        sizes.append((int(height), int(width)))
    return sizes


@click.command()
@click.option(
    "-m",
    "--model",
    default="gray",
    show_default=True,
    metavar="PATH|NAME",
    help="Model file or shipped model name (gray, gray-fast, color, watermark-gray).",
)
@click.option(
    "-s",
    "--size",
    "sizes",
    multiple=True,
    callback=parse_size,
    metavar="WxH",
    help="Image sizes; repeatable. Default: 256x256, 512x512, 2048x2048, 6000x4000.",
)
@click.option("--min-seconds", type=float, default=2.0, show_default=True, help="Time spent per size.")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results here as JSON.",
)
@tiling_options
def bench(model: str, sizes: list[tuple[int, int]], min_seconds: float, out: Path | None, **options) -> None:
    """Throughput, latency and peak memory per image size, and the GFLOP/s the model reaches
    next to the machine's ceiling measured in the same run (a matrix multiply; an int8 convolution for int8);
    and the MP/s of a stream of such images, as `denoise batch` runs them."""
    from denoiser.artifact import resolve_model
    from denoiser.bench import SIZES, bench_size, ceiling, conv_flops_per_pixel
    from denoiser.engine import Engine

    try:
        engine = Engine.load(str(resolve_model(model)), settings_from(options))
    except FileNotFoundError as error:
        raise click.BadParameter(str(error), param_hint="--model") from error
    flops = conv_flops_per_pixel(engine.artifact.model)
    top, reached_by = ceiling(engine.precision, engine.device)
    click.echo(
        f"model {engine.artifact.card.get('name', model)}: {flops / 1e3:.1f} kFLOP/pixel, "
        f"{engine.precision} on {engine.device} ({platform.processor() or platform.machine()}), "
        f"tiles up to {engine.tile}, overlap {engine.overlap}, "
        f"batch {engine.batch_size}, ensemble {engine.settings.ensemble}"
    )
    click.echo(f"ceiling {top:.1f} GFLOP/s: {reached_by}")
    click.echo(
        f"{'size':>11} {'tiles':>14} {'latency s':>10} {'MP/s':>7} {'GFLOP/s':>8} {'of ceiling':>10} "
        f"{'peak RSS MB':>12} {'stream MP/s':>12}"
    )
    results = []
    for height, width in sizes or SIZES:
        result = bench_size(engine, height, width, flops, min_seconds)
        results.append(result)
        tiles = f"{result.tiles} of {result.tile[1]}x{result.tile[0]}"
        click.echo(
            f"{f'{width}x{height}':>11} {tiles:>14} {result.seconds:>10.3f} {result.mp_per_s:>7.2f} "
            f"{result.gflop_per_s:>8.1f} {result.gflop_per_s / top:>10.0%} {result.peak_rss_mb:>12.0f} "
            f"{result.stream_mp_per_s:>12.2f}"
        )
    if out:
        out.write_text(
            json.dumps(
                {
                    "model": model,
                    "precision": engine.precision,
                    "device": engine.device,
                    "tile": engine.tile,
                    "overlap": engine.overlap,
                    "batch_size": engine.batch_size,
                    "ensemble": engine.settings.ensemble,
                    "flops_per_pixel": flops,
                    "ceiling_gflops": top,
                    "ceiling": reached_by,
                    "sizes": [r._asdict() for r in results],
                },
                indent=2,
            )
        )
