"""The shipped default models: real, trained by our command, found without flags, also from a plain install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from denoiser.artifact import default_model_path, load_artifact, resolve_model
from denoiser.engine import Engine, Settings
from denoiser.noise import NoiseSpec, degrade, psnr

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "clean"
TRAINED_BY = ("python -m denoise_train ", "python -m train ")  # the cards inside record the command as it was typed


def example(name: str, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(EXAMPLES / name) as im:
        pixels = np.asarray(im.convert("L" if channels == 1 else "RGB"), np.float32) / 255.0
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


@pytest.mark.parametrize(
    "channels, name, photo", [(1, "gray", "camera.png"), (3, "color", "coffee.jpg"), (1, "gray-fast", "camera.png")]
)
def test_shipped_denoisers_are_trained_and_denoise(channels, name, photo):
    artifact = load_artifact(resolve_model(name))
    card = artifact.card
    assert artifact.channels == channels and card["name"] == name
    assert card["command"].startswith(TRAINED_BY)
    assert len(card["training"]["fingerprint_sha256"]) == 64 and card["training"]["files"]
    clean, engine = example(photo, channels), Engine(artifact, Settings(tile=128, batch_size=4))
    for spec in (NoiseSpec("gauss", 25), NoiseSpec("sp", 10)):
        noisy = degrade(clean, spec, np.random.default_rng(0))
        assert psnr(clean, engine.denoise(noisy)) > psnr(clean, noisy) + 4.0, spec


@pytest.mark.parametrize(
    "channels, name, photo", [(1, "gray", "camera.png"), (3, "color", "coffee.jpg"), (1, "gray-fast", "camera.png")]
)
def test_shipped_denoisers_carry_an_int8_graph_nearly_as_clean_as_float32(channels, name, photo):
    path = str(resolve_model(name))
    assert set(load_artifact(path).card["int8"]["validation"]) == {"gauss:15", "gauss:25", "gauss:50", "sp:10", "wm:40"}
    clean = example(photo, channels)
    noisy = degrade(clean, NoiseSpec("gauss", 25), np.random.default_rng(0))
    exact, int8 = (
        Engine.load(path, Settings(tile=256, batch_size=2, device="cpu", precision=precision))
        for precision in ("float32", "int8")
    )
    gain = psnr(clean, int8.denoise(noisy)) - psnr(clean, noisy)
    assert psnr(clean, exact.denoise(noisy)) - psnr(clean, noisy) - 0.4 < gain


def test_int8_tiles_at_the_cards_seam_radius_differ_from_the_whole_image_far_less_than_int8_from_float32():
    # int8 rounding turns the float tiles' tiny seam differences into whole steps here and there, so the check is
    # against int8's own deviation: on camera.png tiles change 5% of pixels by over half a level (mean 0.05 levels,
    # at most 2.5), int8 itself changes the whole image by 0.9 levels on average, at most 11.5
    path = str(resolve_model("gray"))
    clean = example("camera.png", 1)[:296, :296]
    noisy = degrade(clean, NoiseSpec("gauss", 25), np.random.default_rng(0))
    engine = Engine.load(path, Settings(tile=0, device="cpu", precision="int8"))
    assert engine.plan(296, 296).count >= 4
    whole = np.clip(engine.artifact.predict(noisy[None])[0], 0, 1)
    exact = np.clip(engine.artifact.model.predict_on_batch(noisy[None])[0], 0, 1)
    seams, rounding = np.abs(engine.denoise(noisy) - whole), np.abs(whole - exact)
    assert seams.mean() < 0.1 * rounding.mean() and seams.max() < 0.5 * rounding.max()


def test_the_defaults_are_the_gray_and_colour_models():
    assert [load_artifact(default_model_path(c)).card["name"] for c in (1, 3)] == ["gray", "color"]


@pytest.mark.parametrize(
    "name, photo, side", [("gray", "camera.png", 296), ("color", "coffee.jpg", 296), ("gray-fast", "camera.png", 512)]
)
def test_tiles_at_the_cards_seam_radius_match_the_whole_image_on_a_photo_it_was_not_measured_on(name, photo, side):
    artifact = load_artifact(resolve_model(name))
    assert artifact.seam_radius < artifact.receptive_radius
    clean = example(photo, artifact.channels)[:side, :side]
    noisy = degrade(clean, NoiseSpec("gauss", 25), np.random.default_rng(0))
    engine = Engine(artifact, Settings(tile=0))  # the smallest tiles the overlap allows: the most seams
    assert engine.plan(side, side).count >= 4
    whole = np.clip(artifact.model.predict_on_batch(noisy[None])[0], 0, 1)
    assert np.abs(engine.denoise(noisy) - whole).max() <= 1 / 255


def test_watermark_model_removes_text_in_a_font_and_words_it_never_saw():
    artifact = load_artifact(resolve_model("watermark-gray"))
    card = artifact.card
    assert card["task"] == "watermark" and card["architecture"]["preset"] == "matte"
    assert card["command"].startswith(TRAINED_BY) and card["training"]["init_card"]["command"]
    clean = example("camera.png", 1)
    engine, default = (
        Engine(a, Settings(tile=128, batch_size=4)) for a in (artifact, load_artifact(default_model_path(1)))
    )
    for seed in (0, 1):
        marked = degrade(clean, NoiseSpec("wm", 40), np.random.default_rng(seed))  # evaluation's held-out style
        assert psnr(clean, engine.denoise(marked)) > psnr(clean, marked) + 5.0
        assert psnr(clean, default.denoise(marked)) < psnr(clean, marked) + 0.5


def test_watermark_models_int8_graph_removes_nearly_as_much_as_float32():
    path = str(resolve_model("watermark-gray"))
    clean = example("camera.png", 1)
    marked = degrade(clean, NoiseSpec("wm", 40), np.random.default_rng(0))
    exact, int8 = (
        Engine.load(path, Settings(tile=256, batch_size=2, device="cpu", precision=precision))
        for precision in ("float32", "int8")
    )
    gain, exact_gain = (psnr(clean, engine.denoise(marked)) - psnr(clean, marked) for engine in (int8, exact))
    assert gain > 0.9 * exact_gain  # measured: 12.95 dB against 13.66 (Set12: 88-96% at 20-60%)


def silhouette() -> np.ndarray:
    """A product shot: a light object on a black background, unlike any natural photo (RGB floats)."""
    from PIL import Image, ImageDraw

    shot = Image.new("RGB", (400, 400), "black")
    ImageDraw.Draw(shot).ellipse((120, 60, 280, 340), fill=(200, 200, 200))
    return np.asarray(shot, np.float32) / 255.0


def test_default_scorer_passes_the_example_photos_and_flags_other_pictures():
    from denoiser.anomaly import Scorer

    scorer = Scorer.load("scorer")
    assert scorer.card["command"].startswith(tuple(f"{command}scorer " for command in TRAINED_BY))
    assert len(scorer.card["training"]["fingerprint_sha256"]) == 64
    photos = [scorer.score(example(name, 3))[0] for name in sorted(os.listdir(EXAMPLES))]
    odd = [scorer.score(image)[0] for image in (silhouette(), np.zeros((300, 300, 3), np.float32))]
    assert not any(photo.anomalous for photo in photos), photos
    assert all(o.anomalous for o in odd) and min(o.score for o in odd) > max(p.score for p in photos), odd


@pytest.mark.parametrize("name", ["gray", "color", "gray-fast", "watermark-gray"])
def test_the_card_beside_each_shipped_denoiser_summarises_the_one_inside(name):
    import shlex

    from denoiser.artifact import card_history, read_card

    inside, beside = read_card(resolve_model(name)), json.loads((ROOT / "models" / f"{name}.json").read_text())
    training, history = beside["training"], card_history(inside)
    assert training["fingerprint_sha256"] == inside["training"]["fingerprint_sha256"] and "files" not in training
    assert training["images"] == len(inside["training"]["files"])
    assert sum(folder["images"] for folder in training["data"]) == training["images"] + training["validation_images"]
    assert [(p["seconds"], p["loss"]) for p in training["history"]] == [(p["seconds"], p["loss"]) for p in history]
    for command in [p["command"] for p in training["history"]] + [beside["command"], beside["int8"]["command"]]:
        args = shlex.split(command)
        assert args[:3] == ["python", "-m", "denoise_train"], command
        paths = [value for flag, value in zip(args, args[1:]) if flag in ("--out", "--init", "--data")]
        assert all(path.startswith(("models/", "../shared/data/")) for path in paths), command
    assert beside["intended_use"] and beside["limits"] and beside["metrics"]["development"]["date"]


def test_every_card_beside_a_model_is_under_16_kb():
    assert {
        path.name: path.stat().st_size for path in (ROOT / "models").glob("*.json") if path.stat().st_size >= 16_000
    } == {}


def fresh_copy(target: Path) -> Path:
    """The working tree as a fresh clone holds it, copied to `target`: no build/ whose leftovers a wheel would take
    in (ROOT itself where git cannot list the files)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return ROOT
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def test_plain_install_into_fresh_venv_finds_the_models(tmp_path):
    """`pip install .` (not editable) into a new venv; its `denoise` runs with no model flags from elsewhere."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # dependencies come from this test environment, so nothing large is downloaded
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_test_deps.pth").write_text("\n".join(sorted(outer)) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            str(fresh_copy(tmp_path / "checkout")),
        ],
        check=True,
    )

    inbox = tmp_path / "in"
    inbox.mkdir()
    for photo in ("camera.png", "coffee.jpg"):
        (inbox / photo).write_bytes((EXAMPLES / photo).read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [venv / "bin" / "denoise", "batch", "in", "out", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert {r["model"] for r in records} == {"gray", "color"} and {r["scorer"] for r in records} == {"scorer"}
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import denoiser.artifact as a; print(a.default_model_path(1))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(site)), "models must come from the installed package, not the checkout"
    packages = {path.name for path in site.iterdir() if (path / "__init__.py").is_file()}
    assert packages == {"denoiser", "denoised", "denoise_train"}, "no generic top-level names such as train"
    assert list(site.glob("denoise-*.dist-info/licenses/LICENSE")), "the wheel carries the LICENSE"
    version = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import denoiser, importlib.metadata as m; print(denoiser.__version__ == m.version('denoise'))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    watch = subprocess.run(
        [venv / "bin" / "denoise", "watch", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert version == "True" and watch.returncode == 0 and "INBOX OUTPUT" in watch.stdout, watch.stderr
