"""The training command line: `denoise train` trains a denoiser, `denoise train scorer` an anomaly scorer
(`python -m denoise_train` is the same in a checkout).

`denoise train --preset NAME` with an autoencoder preset from the seeds runs `scorer` with that preset.
"""

from __future__ import annotations

import os
import shlex
import sys
from importlib.util import find_spec
from pathlib import Path

import click

from denoise_train.autoencoders import AUTOENCODERS
from denoise_train.presets import PRESETS
from denoise_train.quantize import PATCH, PERCENTILE, TILES
from denoiser.artifact import MODEL_SUFFIX

SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}
REPORT_MODULES = ("matplotlib", "sklearn")  # the scorer's report: the `train` extra


def keras_out(_ctx, _param, value: str) -> str:
    """--out as a `.keras` path: a name without a suffix gets `.keras`; another suffix is refused at once."""
    path = Path(value)
    if not path.suffix:
        return str(path.with_suffix(MODEL_SUFFIX))
    if path.suffix != MODEL_SUFFIX:
        raise click.BadParameter(f"{value!r}: a model is a {MODEL_SUFFIX} file (e.g. {value}{MODEL_SUFFIX})")
    return value


def data_option(help: str, required: bool = True):
    """-d/--data: folders of images, repeatable."""
    return click.option(
        "-d",
        "--data",
        "data",
        required=required,
        multiple=True,
        type=click.Path(exists=True, file_okay=False),
        help=help,
    )


def precision_option(subject: str = ""):
    """The --precision option of a training run."""
    return click.option(
        "--precision",
        type=click.Choice(["auto", "float32", "bfloat16"]),
        default="auto",
        help=f"{subject}auto = bfloat16 on a GPU, or on a CPU where a bf16 convolution is faster.",
    )


def workers_options(subject: str = "training batches", *names: str):
    """The --workers (named `names`, default -w too) and --processes/--threads options of a training run."""

    def apply(command):
        command = click.option(
            "--processes/--threads",
            default=False,
            help="Synthesise batches in worker processes, past the GIL: for a GPU that trains faster than threads "
            "can feed it.",
        )(command)
        return click.option(
            *(names or ("-w", "--workers")),
            type=int,
            default=1,
            help=f"Threads (or processes) that synthesise {subject}.",
        )(command)

    return apply


def out_option(help: str):
    """-o/--out: the .keras file to write (see keras_out)."""
    return click.option(
        "-o", "--out", "out", required=True, type=click.Path(dir_okay=False), callback=keras_out, help=help
    )


def require_extra(extra: str, modules: tuple[str, ...], needed_by: str) -> None:
    """Stop in one line, before any work, when an optional dependency of `extra` is not installed."""
    missing = [name for name in modules if find_spec(name) is None]
    if missing:
        raise click.ClickException(f"{needed_by} needs {', '.join(missing)}: pip install 'denoise[{extra}]'")


class DefaultGroup(click.Group):
    """A group that runs `denoiser`, or `scorer` for an autoencoder preset, when no command is named."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_for(args), *args]
        return super().parse_args(ctx, args)

    @staticmethod
    def default_for(args: list[str]) -> str:
        """`scorer` when the arguments name an autoencoder preset, else `denoiser`."""
        presets = [value for flag, value in zip(args, args[1:]) if flag in ("-p", "--preset")]
        presets += [arg.split("=", 1)[1] for arg in args if arg.startswith("--preset=")]
        return "scorer" if any(preset in AUTOENCODERS for preset in presets) else "denoiser"


@click.group(cls=DefaultGroup, context_settings=SETTINGS)
def main() -> None:
    """Train denoisers and anomaly scorers and export them with their model cards.

    With no command, `denoiser` runs; with an autoencoder preset (--preset selu, ...), `scorer` runs.
    """


def command_line() -> str:
    """The command as typed, for the model card: `denoise train ...` or `python -m denoise_train ...`."""
    program = "denoise" if Path(sys.argv[0]).name == "denoise" else "python -m denoise_train"
    return f"{program} {shlex.join(sys.argv[1:])}"


@main.command(context_settings=SETTINGS)
@data_option("Folder of clean training images; repeat to train on several.")
@out_option(
    "Where to write the .keras model (the card goes beside it as .json); .keras is added to a name without a suffix."
)
@click.option(
    "-p",
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default="unet",
    show_default=True,
    help="unet = residual U-Net denoiser; unet-half = the same on 2x2-folded pixels, a quarter of the work; "
    "unet-lite = unet-half under one narrow full-resolution level; "
    "matte = U-Net that finds a watermark and inverts its blend.",
)
@click.option("-c", "--channels", type=click.Choice(["1", "3"]), default="1", help="1 = gray, 3 = colour.")
@click.option("--depth", type=int, default=10, help="Conv layers (residual preset).")
@click.option(
    "--width",
    type=int,
    default=32,
    help="Channels per conv layer (residual preset) or at the top scale (unet, unet-half, matte), or at the "
    "top of the half-resolution body (unet-lite).",
)
@click.option(
    "--levels",
    type=int,
    default=4,
    help="Scales, each half the size of the last (unet, unet-half, unet-lite's body, matte).",
)
@click.option(
    "--bottom",
    type=int,
    default=2,
    help="Residual blocks at the lowest scale (unet presets); those past the second start as the identity, "
    "so a net with more can grow from an --init parent.",
)
@click.option(
    "--decoder",
    type=int,
    default=1,
    help="Residual blocks at each scale on the way up (unet presets); those past the first start as the "
    "identity, as --bottom's do.",
)
@click.option("--top-width", type=int, default=24, help="Channels at full resolution (unet-lite).")
@click.option("-e", "--epochs", type=int, default=10)
@click.option(
    "-m",
    "--minutes",
    type=float,
    default=None,
    help="Train for this long instead of --epochs, the learning rate decaying over the time.",
)
@click.option("-s", "--steps", type=int, default=200, help="Batches per epoch.")
@click.option("-b", "--batch-size", type=int, default=32)
@click.option("--patch", type=int, default=64, help="Training patch size in pixels.")
@click.option("--lr", type=float, default=1e-3, help="Peak learning rate (cosine decay).")
@click.option(
    "--ema",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    help="Export the moving average of the weights with this momentum, e.g. 0.999 (0: off).",
)
@click.option("--sigma-max", type=float, default=50.0, help="Gaussian sigma is uniform in [0, this] (8-bit levels).")
@click.option("--sp-prob", type=float, default=0.2, help="Share of patches with salt-and-pepper instead.")
@click.option("--sp-max", type=float, default=15.0, help="Salt-and-pepper percentage is uniform in [0, this].")
@click.option(
    "--wm-prob",
    type=float,
    default=0.0,
    help="Share of patches with a text watermark (20-60% opacity, DejaVu fonts) instead.",
)
@click.option(
    "--logo-share",
    type=float,
    default=0.0,
    help="Share of the watermarks that are logos (hexagon, triangle, cross, diamond, bars) instead of text.",
)
@click.option(
    "--matte-weight",
    type=float,
    default=0.1,
    help="Weight of the opacity map's binary cross-entropy beside the MSE on pixels (matte preset).",
)
@click.option(
    "-t",
    "--task",
    type=click.Choice(["denoise", "static", "watermark"]),
    default="denoise",
    help="denoise = the mixture above; static or watermark = only that degradation.",
)
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start from this model's weights: every layer it shares by name and shape, e.g. a shipped model's.",
)
@click.option(
    "--first",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Train a second stage on this trained matte model (matte preset): it runs frozen, and its opacity, "
    "colour and result join the input; with --init set to it too, training starts from its output.",
)
@precision_option()
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Back up every epoch here and resume from it when rerun.",
)
@click.option("--seed", type=int, default=0)
@workers_options()
def denoiser(**options) -> None:
    """Train a fully convolutional denoising autoencoder on clean images and export it."""
    from denoise_train.data import NoImages
    from denoise_train.run import Recipe, RecipeError, train_and_export

    options |= {"data": os.pathsep.join(options["data"]), "channels": int(options["channels"])}
    try:
        path = train_and_export(Recipe(**options), command_line())
    except (RecipeError, NoImages) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"exported {path} and {path.with_suffix('.json')}")


@main.command(context_settings=SETTINGS)
@data_option("Folder of normal images, or an IDX folder such as Fashion-MNIST's. Repeat for more folders.")
@out_option(
    "Where to write the .keras scorer (card .json and report .report.png beside it); .keras is added to a name "
    "without a suffix."
)
@click.option(
    "-p",
    "--preset",
    type=click.Choice(sorted(AUTOENCODERS) + ["photo"]),
    default="conv-ae",
    help="An autoencoder, or `photo`: Gaussian models of global and patch statistics of natural photos "
    "(the shipped scorer; --crops, --holdout, --fpr and --neighbours apply; every 5th file is left out).",
)
@click.option("-l", "--label", type=int, default=None, help="IDX data: train on this label only.")
@click.option("--size", type=int, default=28, help="Images are resized to size x size (a multiple of 4).")
@click.option("-c", "--channels", type=click.Choice(["1", "3"]), default="1", help="1 = gray, 3 = colour.")
@click.option("--code", type=int, default=None, help="Code size. Default: the preset's (conv-30-15: fixed).")
@click.option("--crops", type=int, default=0, help="Image folders: random crops per image besides the whole.")
@click.option(
    "-e",
    "--epochs",
    type=int,
    default=5,
    help="Passes over the images (each in its four turns with the rotation head).",
)
@click.option("-b", "--batch-size", type=int, default=128)
@click.option("--lr", type=float, default=1e-3)
@click.option("--holdout", type=float, default=0.2, help="Share of normal images held out for calibration.")
@click.option("--fpr", type=float, default=0.01, help="False-positive rate at the threshold.")
@click.option("-k", "--neighbours", type=int, default=10, help="Nearest normal views averaged per component.")
@click.option("--bank", type=int, default=10000, help="Normal training images remembered for the distances.")
@click.option(
    "-w",
    "--weights",
    default=None,
    show_default=False,
    help="Weights of the standardised components recon, latent, pixels, edges, rotation. "
    "Default: pixels:1,edges:1, plus rotation:0.5 with the rotation head.",
)
@click.option(
    "--rotation/--no-rotation",
    default=None,
    show_default=False,
    help="Train a head on the code to tell the four quarter turns of each image apart, and use it "
    "as a component. Default: on for conv-ae, off for the seed presets.",
)
@click.option(
    "--damage-steps",
    type=click.IntRange(0),
    default=0,
    help="Photo preset: train a damage network (scratches, stains, pasted patches) for this many batches; 0: none.",
)
@click.option(
    "--damage-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Photo preset: reuse this photo scorer's damage network instead of training one, or with --damage-steps "
    "train it further (the statistics and calibration are fitted anew).",
)
@click.option(
    "--damage-positive-weight",
    type=click.FloatRange(min=1.0),
    default=1.0,
    help="Photo preset: damaged pixels count this many times in the damage network's loss.",
)
@click.option(
    "--damage-width",
    type=click.IntRange(4),
    default=None,
    help="Photo preset: channels at full size of a fresh damage network (twice, three and four times that at "
    "1/2, 1/4 and 1/8 size). Default: 16.",
)
@precision_option("Of the damage network's training: ")
@workers_options("the damage network's training windows", "--workers")
@click.option("--report/--no-report", default=True, help="Save loss curves, a before/after grid and the codes.")
@click.option("--seed", type=int, default=0)
def scorer(**options) -> None:
    """Train an undercomplete autoencoder on normal images and export it as a calibrated anomaly scorer."""
    from denoise_train.scorer import ScorerRecipe, parse_weights, train_scorer

    try:
        parse_weights(options["weights"] or "")
    except ValueError as error:
        raise click.BadParameter("give NAME:WEIGHT pairs separated by commas", param_hint="--weights") from error
    if options["size"] % 4:
        raise click.BadParameter("must be a multiple of 4", param_hint="--size")
    if options["report"] and options["preset"] != "photo":
        require_extra("train", REPORT_MODULES, "the scorer's report (--no-report goes without)")
    options |= {"data": os.pathsep.join(options["data"]), "channels": int(options["channels"])}
    try:
        path = train_scorer(ScorerRecipe(**options), command_line())
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"exported {path} and {path.with_suffix('.json')}")


@main.command(context_settings=SETTINGS)
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
def seams(model: str) -> None:
    """Measure MODEL's receptive radius and its seam radius (on its card's validation images) and write them into
    the card.

    Training does this at export; this updates models exported before cards had it or measured it rightly.
    """
    from denoise_train.run import remeasure_seams

    receptive, seam = remeasure_seams(model)
    click.echo(f"{model}: receptive radius {receptive}, seam radius {seam}")


@main.command(context_settings=SETTINGS)
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@data_option("Folder holding the card's training images, if not where the card says; repeatable.", required=False)
@click.option(
    "-t", "--tiles", type=int, default=TILES, help="Noisy calibration tiles, from the card's training images."
)
@click.option("--patch", type=int, default=PATCH, help="Calibration tile side.")
@click.option(
    "--percentile",
    type=float,
    default=PERCENTILE,
    help="Each activation ranges up to the pth percentile of its magnitudes either side of zero, and no "
    "further than its values go.",
)
@click.option("--seed", type=int, default=0)
def quantize(model: str, data: tuple[str, ...], tiles: int, patch: int, percentile: float, seed: int) -> None:
    """Store an int8 graph of MODEL in its archive, for fast CPU inference (--precision int8).

    The activation ranges are calibrated on noisy tiles of the card's training images; the card records them and
    the int8 validation PSNR beside the float one.
    """
    from denoise_train.quantize import quantize_saved

    card = quantize_saved(model, command_line(), list(data) or None, tiles, patch, percentile, seed)
    for noise, metrics in card["int8"]["validation"].items():
        click.echo(
            f"{noise:>9}: validation PSNR float32 {card['metrics']['validation'][noise]['psnr']:.3f}, "
            f"int8 {metrics['psnr']:.3f}"
        )
