"""The daemon's settings: one `Config`, from command-line options or from a TOML file and `DENOISED_*` variables."""

from __future__ import annotations

import ipaddress
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from denoiser.engine import Settings
from denoiser.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from denoiser.settings import RULES, Rule, is_batch_size, problem

ENV_PREFIX = "DENOISED_"
AFTER_CHOICES = ("processed", "delete", "keep")
ENGINE = Settings()  # the engine's defaults are the daemon's


class StartupError(Exception):
    """A setting or a folder that keeps the daemon from starting; the message says what to fix."""


class Config(NamedTuple):
    """Everything one daemon run needs; field names are the TOML keys (`DENOISED_<KEY>` in the environment)."""

    inbox: Path
    output: Path
    model: str | None = None
    scorer: str | None = None
    heatmaps: bool = False
    tile: int | None = ENGINE.tile
    overlap: int | None = ENGINE.overlap
    batch_size: int = ENGINE.batch_size
    device: str = ENGINE.device
    precision: str = ENGINE.precision
    ensemble: int = ENGINE.ensemble
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    recursive: bool = False
    polling: bool = False
    settle: float = 2.0
    after: str = "processed"
    max_latency: float = 100.0
    queue_size: int = 64
    metrics_port: int = 0
    metrics_address: str = "127.0.0.1"

    def settings(self) -> Settings:
        """Engine settings (tile, overlap, batch, device, precision, ensemble)."""
        return Settings.of(self._asdict())

    def check(self) -> Config:
        """Refuse values out of range (by DAEMON_RULES, as the command line does); returns self."""
        problems = [problem(name, value, DAEMON_RULES) for name, value in zip(self._fields, self)]
        problems = [words for words in problems if words]
        if problems:
            raise StartupError("; ".join(problems))
        return self


def is_ip_address(text: str) -> bool:
    """True for an IPv4 or IPv6 address literal (the metrics endpoint binds to one)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


DAEMON_RULES: dict[str, Rule] = RULES | {
    # a number, not auto: the daemon gathers claims by it before an engine is loaded
    "batch_size": Rule(test=lambda value: is_batch_size(value) and value != "auto", says="be at least 1"),
    "settle": Rule(minimum=0),
    "after": Rule(choices=AFTER_CHOICES),
    "max_latency": Rule(minimum=0),
    "queue_size": Rule(minimum=1),
    "metrics_port": Rule(0, 65535, says="be 0 (off) or a TCP port"),
    "metrics_address": Rule(test=is_ip_address, says="be an IP address such as 127.0.0.1"),
}
DEFAULTS = Config._field_defaults
FIELD_TYPES = typing.get_type_hints(Config)


def convert(key: str, value) -> object:
    """A TOML or environment value as the field's type; strings are parsed."""
    kind = FIELD_TYPES[key]
    optional = type(None) in typing.get_args(kind)
    if optional:
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
    try:
        if kind is bool:
            return parse_bool(value)
        if kind is Path:
            return Path(value).expanduser()
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError) as error:
        raise StartupError(f"{key}: {value!r} is not a valid {kind.__name__}") from error


def parse_bool(value) -> bool:
    """True/false from a TOML boolean or a string such as 1, yes, on, false."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def load_config(path: Path | None, environ: Mapping[str, str] = os.environ) -> Config:
    """Read the TOML file (if any), let `DENOISED_*` variables override its keys, check the result."""
    values: dict = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise StartupError(f"cannot read config {path}: {error}") from error
    values = {key.replace("-", "_"): value for key, value in values.items()}
    values.update(
        {name[len(ENV_PREFIX) :].lower(): value for name, value in environ.items() if name.startswith(ENV_PREFIX)}
    )
    unknown = sorted(set(values) - set(Config._fields))
    if unknown:
        raise StartupError(f"unknown config keys: {', '.join(unknown)} (known: {', '.join(Config._fields)})")
    missing = [key for key in ("inbox", "output") if key not in values]
    if missing:
        names = " and ".join(missing)
        raise StartupError(f"{names} must be set (in the config file or as DENOISED_{missing[0].upper()})")
    return Config(**{key: convert(key, value) for key, value in values.items()}).check()
