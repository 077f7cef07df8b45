"""What a newcomer meets first: quiet commands, a missing extra named before any work, a model path without a suffix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DENOISE = Path(sys.executable).with_name("denoise")


def test_denoise_batch_prints_no_tensorflow_notices(tmp_path):
    """Nor its warning about retracing: the shipped models on the examples, which come in three sizes, so several
    tile batches and damage canvases."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DENOISE_QUIET_TF")}
    result = subprocess.run(
        [
            DENOISE,
            "batch",
            ROOT / "examples" / "clean",
            tmp_path / "out",
            "-q",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.startswith("4 images,"), result.stderr


def test_the_users_own_tensorflow_log_level_is_kept(monkeypatch):
    from denoiser import quiet

    monkeypatch.setenv(quiet.LEVEL, "0")
    monkeypatch.delenv(quiet.OURS, raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    quiet.quiet_tensorflow()
    assert os.environ[quiet.LEVEL] == "0" and not any(isinstance(f, quiet.QuietTensorFlow) for f in sys.meta_path)


def train(*args: str):
    from denoise_train.cli import main

    return CliRunner().invoke(main, list(args))


def test_scorer_without_the_train_extra_stops_before_training(tmp_path, monkeypatch):
    import denoise_train.cli

    monkeypatch.setattr(denoise_train.cli, "find_spec", lambda name: None if name == "matplotlib" else object())
    monkeypatch.setattr("denoise_train.scorer.train_scorer", lambda *_: pytest.fail("training started"))
    result = train("scorer", "--data", str(tmp_path), "--out", str(tmp_path / "s.keras"))
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: the scorer's report (--no-report goes without) needs matplotlib: pip install 'denoise[train]'"
    )


def test_out_without_a_suffix_becomes_a_keras_file_and_another_suffix_is_refused(tmp_path, monkeypatch):
    recipes = []
    monkeypatch.setattr(
        "denoise_train.scorer.train_scorer", lambda recipe, _: recipes.append(recipe) or Path(recipe.out)
    )
    result = train("scorer", "--data", str(tmp_path), "--out", str(tmp_path / "scorer0"), "--no-report")
    assert result.exit_code == 0, result.output
    assert recipes[0].out == str(tmp_path / "scorer0.keras")
    refused = train("scorer", "--data", str(tmp_path), "--out", str(tmp_path / "scorer0.h5"), "--no-report")
    assert refused.exit_code == 2 and "a model is a .keras file (e.g. " in refused.output
    assert "--weights" not in refused.output


def test_folders_without_images_or_with_other_files_are_refused_in_words(tmp_path):
    from denoiser.cli import main

    empty, mixed = tmp_path / "empty", tmp_path / "mixed"
    empty.mkdir()
    mixed.mkdir()
    (empty / "IMG_0001.MOV").write_bytes(b"\0\0\0\x14ftypqt  ")  # companions of photos are passed over
    (empty / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (mixed / "notes.txt").write_text("not an image")
    out = str(tmp_path / "m.keras")
    for result in (
        train("--data", str(empty), "--out", out, "--epochs", "1", "--steps", "1"),
        train("scorer", "--data", str(empty), "--out", out, "--no-report"),
    ):
        assert result.exit_code == 1 and result.output.strip() == f"Error: no images in {empty}"
    report = str(tmp_path / "report")
    result = CliRunner().invoke(main, ["eval", str(empty), "-o", report])
    assert result.exit_code == 2 and f"no images in {empty}" in result.output
    result = CliRunner().invoke(main, ["eval", str(mixed), "-o", report])
    assert result.exit_code == 2 and "notes.txt: not an image file" in result.output
