"""The JAX subset: the engine, `denoise batch` and `denoise score` under KERAS_BACKEND=jax (in a subprocess, as Keras
picks its backend at import), compared with TensorFlow's results on the same files in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from denoiser.cli import main
from tests.helpers import write_image

pytest.importorskip("jax")
ROOT = Path(__file__).resolve().parent.parent
PIXEL_TOLERANCE = 0.5 / 255
SCORE_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A folder of gray, colour, 16-bit and alpha images of several sizes; no side is a multiple of 16, where
    TensorFlow's canvas would end at the edge (the convolutions' zero padding) and JAX's be mirror-padded to 128."""
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("mixed")
    write_image(folder / "gray.png", rng.integers(0, 256, (70, 90), np.uint8))
    write_image(folder / "colour.png", rng.integers(0, 256, (60, 50, 3), np.uint8))
    write_image(folder / "alpha.png", rng.integers(0, 256, (50, 40, 4), np.uint8))
    Image.fromarray(rng.integers(0, 65536, (40, 66)).astype(np.uint16)).save(folder / "deep.png")
    return folder


@pytest.fixture(scope="module")
def on_jax(tiny_models, mixed, tmp_path_factory):
    """What tests/jax_subset.py reports and writes when run on the JAX backend."""
    work = tmp_path_factory.mktemp("jax")
    result = work / "result.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "jax_subset.py"),
            str(tiny_models["gray"].parent),
            str(mixed),
            str(work),
            str(result),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return work, json.loads(result.read_text())


def records(folder: Path) -> dict[str, dict]:
    """scores.jsonl's records by input file name."""
    lines = (folder / "scores.jsonl").read_text().splitlines()
    return {Path(record["input"]).name: record for record in map(json.loads, lines)}


def pixels(path: Path) -> np.ndarray:
    """An image's samples scaled to 0..1 by its bit depth."""
    array = np.asarray(Image.open(path))
    return array.astype(np.float64) / (65535 if array.dtype == np.uint16 else 255)


def test_the_subprocess_ran_on_jax(on_jax):
    assert on_jax[1]["backend"] == "jax"


def test_on_jax_tiled_output_equals_whole_image_output(on_jax):
    assert on_jax[1]["tiled_vs_whole"] <= PIXEL_TOLERANCE


def test_on_jax_batch_outputs_match_tensorflow(on_jax, tiny_models, mixed, tmp_path):
    ours = tmp_path / "tf"
    result = CliRunner().invoke(
        main, ["batch", str(mixed), str(ours), "-m", str(tiny_models["gray"]), "--precision", "float32", "-q"]
    )
    assert result.exit_code == 0, result.output
    theirs = on_jax[0] / "batch"
    names = sorted(p.name for p in mixed.iterdir())
    assert sorted(records(theirs)) == names and all(r["status"] == "ok" for r in records(theirs).values())
    for name in names:
        a, b = pixels(theirs / name), pixels(ours / name)
        assert a.shape == b.shape and np.abs(a - b).max() <= PIXEL_TOLERANCE + 1 / 65535, name


def test_on_jax_the_shipped_scorer_scores_as_on_tensorflow(on_jax, mixed, tmp_path):
    ours = tmp_path / "tf"
    result = CliRunner().invoke(main, ["score", str(mixed), str(ours), "-q"])
    assert result.exit_code == 0, result.output
    theirs, mine = records(on_jax[0] / "score"), records(ours)
    assert sorted(theirs) == sorted(mine) == sorted(p.name for p in mixed.iterdir())
    for name, record in mine.items():
        assert abs(theirs[name]["score"] - record["score"]) <= SCORE_TOLERANCE, name
        assert abs(theirs[name]["raw_score"] - record["raw_score"]) <= SCORE_TOLERANCE, name


def test_on_jax_compilations_are_bounded_by_the_tile_shapes_not_the_images(on_jax):
    report = on_jax[1]["compiles"]
    # each tile shape compiles at most one full and one padded batch (plus a few small helper programs)
    assert report["compiles"]["first"] <= 2 * report["tile_shapes"] + 4 < 3 * report["images"]
    assert report["compiles"]["second"] == 0, "images of new sizes but known tile shapes must not recompile"


def test_on_jax_the_next_batch_starts_while_one_computes_and_changes_nothing(on_jax):
    report = on_jax[1]["in_flight"]
    assert report["started_type"].startswith("jax"), "the model call must return a JAX array, not wait for it"
    assert report["against_predict"] <= 1e-6, "the jitted call computes what Keras's predict does"
    assert report["difference"] == 0.0, "a batch in flight must not change any output"
    assert on_jax[1]["forward_released"], "a model's jitted call must go with the model"


def test_on_jax_the_device_checks_on_device_call_computes_what_the_engine_does(on_jax):
    report = on_jax[1]["on_device"]
    assert report["float32"] <= 1e-6, "padding, cropping and clipping on the device must match the engine's"
    assert report["uint8"] <= 0.5 / 255 + 1e-6, "8-bit output is the engine's rounded to levels"
