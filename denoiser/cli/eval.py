"""`denoise eval CLEAN_DIR`: our models beside classical baselines on the same 8-bit noisy files."""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path

import click

from denoiser.cli.options import settings_from, tiling_options
from denoiser.engine import Settings


@click.command("eval")
@click.argument("clean_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("eval"),
    show_default=True,
    help="Folder for eval.json, eval.md and the noisy inputs.",
)
@click.option(
    "--noise",
    default="gauss:15,gauss:25,gauss:50,sp:10,wm:40",
    show_default=True,
    help="Degradations, KIND:LEVEL separated by commas: gauss = sigma in 8-bit levels, "
    "sp = percent of pixels, wm = text watermark opacity percent, logo = logo overlay opacity percent.",
)
@click.option("-s", "--seed", type=int, default=0, show_default=True)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    metavar="MODEL[@[PRECISION][xN]]",
    help="Model file or shipped name, optionally @float32/@bfloat16/@float16 and a self-ensemble of N "
    "orientations (gray@bfloat16x8, gray@x8); repeatable. Default: the shipped model for the "
    "images' channels.",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    type=click.Choice(["median3", "nlm", "bm3d", "none"]),
    help="Baselines to run; repeatable. Default: all that are installed.",
)
@tiling_options
def eval_command(
    clean_dir: Path, out: Path, noise: str, seed: int, models: tuple[str, ...], baselines: tuple[str, ...], **options
) -> None:
    """Add noise to CLEAN_DIR's images, save them as 8-bit PNGs, and compare methods on exactly those files.

    Prints a table of PSNR, SSIM and MP/s per method and degradation, and writes it to OUT as
    eval.md and eval.json.
    """
    from denoiser import baselines as classical
    from denoiser.evaluate import evaluate, load_clean, markdown, per_image, write_report
    from denoiser.imageio import ImageError
    from denoiser.noise import parse_noise

    try:
        specs = parse_noise(noise)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--noise") from error
    try:
        clean = load_clean(clean_dir)
    except ImageError as error:
        raise click.UsageError(f"{clean_dir} holds a file that is not a readable image: {error}") from error
    if not clean:
        raise click.UsageError(f"no images in {clean_dir}")
    channels = {image.shape[-1] for image in clean.values()}
    if len(channels) != 1:
        raise click.UsageError(f"{clean_dir} mixes gray and colour images; evaluate them separately")
    methods = methods_for(models or ("gray" if channels == {1} else "color",), settings_from(options))
    found = classical.available()
    for name in baselines or found:
        if name == "none":
            continue
        if name not in found:
            raise click.UsageError(f"baseline {name} is not installed (pip install 'denoise[baselines]')")
        methods[name] = per_image(found[name])
    rows = []
    for row in evaluate(clean, specs, methods, seed, out):
        speed = "" if row.method == "noisy input" else f"{row.mp_per_s:8.2f} MP/s"
        click.echo(f"{row.noise:>10}  {row.method:<24} PSNR {row.psnr:6.2f}  SSIM {row.ssim:.4f}  {speed}", err=True)
        rows.append(row)
    context = {
        "clean_dir": str(clean_dir),
        "images": len(clean),
        "noise": noise,
        "seed": seed,
        "command": "denoise " + shlex.join(sys.argv[1:]),
        "machine": platform.processor() or platform.machine(),
    }
    write_report(rows, out, context)
    click.echo(markdown(rows))


def methods_for(specs: tuple[str, ...], settings: Settings) -> dict:
    """Warm engines for the --model specs (denoiser.evaluate.model_methods), a bad one reported as --model's."""
    from denoiser.evaluate import model_methods

    try:
        return model_methods(specs, settings)
    except (ValueError, FileNotFoundError) as error:
        raise click.BadParameter(str(error), param_hint="--model") from error
