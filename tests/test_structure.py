"""The layering (the core imports nothing above it) and the settings' single source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
ABOVE_THE_CORE = ("denoised", "denoise_train", "train")


def imported_modules(path: Path) -> set[str]:
    """The absolute module names a source file imports, anywhere in it (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_nothing_above_it():
    offending = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "denoiser").rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in ABOVE_THE_CORE
    )
    assert not offending, offending


def test_denoise_watch_comes_from_the_daemon_through_the_entry_point_group():
    from denoised.cli import watch
    from denoiser.cli import main, plugins

    assert plugins()["watch"].value == "denoised.cli:watch"
    assert main.get_command(None, "watch") is watch and "watch" in main.list_commands(None)


def test_training_is_denoise_train_and_listing_the_commands_imports_no_plugin():
    script = (
        "import sys; from denoiser.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('denoise_train.cli', 'denoised.cli', 'tensorflow') if m in sys.modules))"
    )
    listing = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "train   Train denoisers and anomaly scorers" in listing and "watch   Clean every image" in listing
    assert listing.strip().endswith("[]"), "listing the commands must not import the plugins"
    from denoiser.cli import main

    assert "denoiser  Train a fully convolutional" in CliRunner().invoke(main, ["train", "--help"]).output


def test_watch_options_are_the_daemons_settings_with_its_defaults(tmp_path):
    from denoised.cli import watch
    from denoised.config import DEFAULTS, Config

    options = watch.make_context("watch", [str(tmp_path), str(tmp_path / "out")]).params
    options = {name: value for name, value in options.items() if name not in ("inbox", "output")}
    assert set(options) <= set(Config._fields)
    assert {name: DEFAULTS[name] for name in options} == options


def test_engine_options_take_the_engines_defaults(tmp_path):
    from denoiser.cli.batch import batch
    from denoiser.engine import Settings

    assert Settings.of(batch.make_context("batch", [str(tmp_path), str(tmp_path / "out")]).params) == Settings()


@pytest.mark.parametrize(
    "option, key, value, words",
    [
        ("--queue-size", "QUEUE_SIZE", "0", "queue_size must be at least 1"),
        ("--settle", "SETTLE", "-1", "settle must not be negative"),
        ("--after", "AFTER", "move", "after must be one of processed, delete, keep"),
        ("--ensemble", "ENSEMBLE", "3", "ensemble must be one of 1, 2, 4, 8"),
        ("--tile", "TILE", "8", "tile must be at least 16"),
        ("--metrics-port", "METRICS_PORT", "70000", "metrics_port must be 0 (off) or a TCP port"),
    ],
)
def test_a_bad_setting_reads_the_same_from_the_command_line_and_the_environment(tmp_path, option, key, value, words):
    from denoised.config import StartupError, load_config
    from denoiser.cli import main

    result = CliRunner().invoke(main, ["watch", str(tmp_path), str(tmp_path / "out"), option, value])
    assert result.exit_code == 2 and words in result.output, result.output
    environ = {"DENOISED_INBOX": str(tmp_path), "DENOISED_OUTPUT": str(tmp_path / "out"), f"DENOISED_{key}": value}
    with pytest.raises(StartupError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, environ)
