"""Options shared by the commands that run a model; each takes its default from the type that holds the setting and
is checked by the setting's rule (denoiser.settings), the same rule the daemon's config is checked by."""

from __future__ import annotations

import click

from denoiser.engine import GPU_TILE_MAX, TILE, TILE_OVERLAPS, Settings
from denoiser.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from denoiser.settings import AUTO, RULES, Rule, problem

DEFAULTS = Settings()


class CountOrAuto:
    """A whole number, or the word auto (a click option's kind)."""

    __name__ = "integer or auto"

    def __new__(cls, value):
        return AUTO if str(value).strip().lower() == AUTO else int(value)


class Checked(click.ParamType):
    """A setting's value: converted to `kind` and checked by its rule, so that a bad one reads as it does in the
    daemon's config (`batch_size must be at least 1`)."""

    def __init__(self, setting: str, kind: type = int, rules: dict[str, Rule] = RULES):
        self.setting, self.kind, self.rules = setting, kind, rules
        self.name = kind.__name__

    def convert(self, value, param, ctx):
        if not isinstance(value, self.kind) or isinstance(value, bool):
            try:
                value = self.kind(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a valid {self.name}", param, ctx)
        words = problem(self.setting, value, self.rules)
        if words:
            self.fail(words, param, ctx)
        return value

    def get_metavar(self, param, ctx=None):
        choices = self.rules[self.setting].choices
        return f"[{'|'.join(map(str, choices))}]" if choices else None

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        choices = map(str, self.rules[self.setting].choices)
        return [CompletionItem(choice) for choice in choices if choice.startswith(incomplete)]


def setting(*flags: str, default, kind: type = int, rules: dict[str, Rule] = RULES, **kwargs):
    """A click option for the setting its long flag names (`--batch-size` is `batch_size`)."""
    name = next(flag for flag in flags if flag.startswith("--"))[2:].replace("-", "_")
    return click.option(
        *flags, type=Checked(name, kind, rules), default=default, show_default=default is not None, **kwargs
    )


def _apply(command, options):
    for option in reversed(options):
        command = option(command)
    return command


def tiling_options(command):
    """Add the tiling, batching, device and precision options."""
    return _apply(
        command,
        [
            setting(
                "-t",
                "--tile",
                default=DEFAULTS.tile,
                help="Longest tile side in pixels (raised to twice the overlap if smaller); each image is cut "
                f"into as few tiles as this allows, each fitted to the image to 16 px. Default: {TILE}, "
                f"or {TILE_OVERLAPS} overlaps where that is more; on a GPU, the longest tile half its free memory "
                f"holds, up to {GPU_TILE_MAX}.",
            ),
            setting(
                "--overlap",
                default=DEFAULTS.overlap,
                help="Tile overlap in pixels. Default: from the seam radius in the model's card.",
            ),
            setting(
                "-b",
                "--batch-size",
                default=DEFAULTS.batch_size,
                kind=CountOrAuto,
                metavar="N|auto",
                help="Tiles of TILE x TILE per batch; smaller tiles fill a batch of the same area. auto = 1 on a "
                "CPU; on a GPU as many as half its free memory holds (docs/gpu.md).",
            ),
            setting(
                "--device",
                default=DEFAULTS.device,
                kind=str,
                metavar="auto|cpu|gpu|gpu:N",
                help="auto = the first GPU Keras sees, else the CPU. gpu:N = the Nth GPU (from 0); "
                "one engine per device: run one command per GPU (docs/gpu.md).",
            ),
            setting(
                "--precision",
                default=DEFAULTS.precision,
                kind=str,
                help="auto = bfloat16 on a GPU with bf16 units (compute capability 8.0 on), else float16 there; "
                "bfloat16 on a CPU with bf16 units where a timed convolution runs faster in it, else float32. "
                "int8 = the model's int8 graph on the CPU (ONNX Runtime): faster, slightly less clean.",
            ),
            setting(
                "-e",
                "--ensemble",
                default=DEFAULTS.ensemble,
                help="Run each tile in this many flips and quarter turns and average the outputs turned back "
                "(self-ensemble): cleaner output for this many times the work.",
            ),
        ],
    )


def limit_options(command):
    """Add the input limits: pixels and bytes per file."""
    return _apply(
        command,
        [
            setting("--max-pixels", default=DEFAULT_MAX_PIXELS, help="Refuse images with more pixels than this."),
            setting(
                "--max-bytes",
                default=DEFAULT_MAX_BYTES,
                help="Refuse files larger than this many bytes, before reading them.",
            ),
        ],
    )


def engine_options(command):
    """Add the model option, the tiling options and the input limits."""
    return _apply(
        limit_options(tiling_options(command)),
        [
            click.option(
                "-m",
                "--model",
                default=None,
                metavar="PATH|NAME",
                help="Model file or shipped name (gray, gray-fast, color, watermark-gray). "
                "Default: gray or color per image.",
            ),
        ],
    )


def scorer_options(command):
    """Add the scorer and anomaly-map options."""
    return _apply(
        command,
        [
            click.option(
                "-S",
                "--scorer",
                default=None,
                metavar="PATH|scorer",
                help="Anomaly scorer file (denoise train scorer). Default: the shipped scorer.",
            ),
            click.option(
                "-H",
                "--heatmaps",
                is_flag=True,
                help="Write each image's anomaly map beside its output as NAME.heatmap.png.",
            ),
        ],
    )


def settings_from(options: dict) -> Settings:
    """Engine settings from parsed options; a GPU asked for by name must be visible (a usage error otherwise)."""
    settings = Settings.of(options)
    if settings.device.startswith("gpu"):
        from denoiser.engine import NoGPUError, resolve_device

        try:
            resolve_device(settings.device)
        except NoGPUError as error:
            raise click.BadParameter(str(error), param_hint="--device") from error
    return settings
