"""The anomaly scorer: every seed autoencoder trains and exports, calibration holds, scores separate."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner

from denoise_train.autoencoders import AUTOENCODERS, build_autoencoder
from denoise_train.scorer import ScorerRecipe, export_scorer, fit_scorer, raw_scores
from denoiser.anomaly import Scorer, heatmap_path, prepare


def stripes(rng, count: int, size: int = 28, vertical: bool = False) -> np.ndarray:
    """Normal images: stripes of random period and phase (vertical ones are the anomalies)."""
    axis = np.arange(size, dtype=np.float32)
    period = rng.uniform(4, 9, (count, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    wave = 0.5 + 0.4 * np.sin(2 * np.pi * axis[None, :, None] / period + phase)
    images = np.broadcast_to(wave, (count, size, size))
    images = np.swapaxes(images, 1, 2) if vertical else images
    return np.clip(images + rng.normal(0, 0.03, images.shape), 0, 1)[..., None].astype(np.float32)


def write_idx(folder, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N x H x W uint8) and labels as gzipped IDX files, as Fashion-MNIST ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\0\0\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in images.shape) + images.tobytes())
    with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\0\0\x08\x01" + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def stripe_scorer(tmp_path_factory):
    """A conv-ae scorer trained briefly on horizontal stripes, exported and loaded back.

    Without the rotation head: stripes look the same after a half turn, so telling turns apart is ill-posed.
    """
    rng = np.random.default_rng(0)
    recipe = ScorerRecipe(
        "stripes",
        str(tmp_path_factory.mktemp("scorer") / "stripes.keras"),
        epochs=3,
        batch_size=32,
        holdout=0.4,
        fpr=0.05,
        report=False,
        rotation=False,
    )
    fitted = fit_scorer(stripes(rng, 1200), recipe)
    path = export_scorer(fitted, recipe, "test", {"data": ["stripes"]})
    return path, fitted


@pytest.mark.parametrize("preset", sorted(AUTOENCODERS))
def test_every_preset_trains_exports_and_scores(tmp_path, rng, preset):
    recipe = ScorerRecipe(
        "stripes", str(tmp_path / f"{preset}.keras"), preset=preset, epochs=1, batch_size=32, holdout=0.25
    )
    fitted = fit_scorer(stripes(rng, 96), recipe)
    path = export_scorer(fitted, recipe, f"python -m denoise_train --preset {preset}", {"data": ["stripes"]})
    scorer = Scorer.load(path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"]["preset"] == preset and card["command"].endswith(preset)
    assert path.with_suffix(".report.png").stat().st_size > 0
    result, heat = scorer.score(rng.random((40, 50, 3)).astype(np.float32), heatmap=True)
    assert 0.0 <= result.score <= 1.0 and np.isfinite(result.raw)
    assert ("rotation" in scorer.standardiser.weight) == (preset == "conv-ae")
    assert heat.shape == (40, 50) and 0.0 <= heat.min() and heat.max() <= 1.0
    images = stripes(rng, 8)
    assert np.allclose(raw_scores(scorer, images), raw_scores(fitted.scorer, images), atol=1e-4)


def test_seed_presets_keep_the_seed_shapes():
    params = {name: build_autoencoder(name, 28, 1)[0].count_params() for name in AUTOENCODERS}
    assert params["selu"] == 784 * 100 + 100 + 100 * 30 + 30 + 30 * 100 + 100 + 100 * 784 + 784
    assert params["selu-tied"] == 784 * 100 + 100 + 784 + 100 * 30 + 30 + 100
    assert params["dense"] == 784 * 15 + 15 + 15 * 784 + 784
    assert params["dense-2d"] == 784 * 300 + 300 + 300 * 2 + 2 + 2 * 300 + 300 + 300 * 784 + 784
    assert params["conv-30-15"] == 300 + 4065 + 2040 + 4080 + 271  # the seed's model.summary()


def test_tied_decoder_uses_the_encoders_kernels(rng):
    _, model = build_autoencoder("selu-tied", 28, 1)
    tied = model.get_layer("tied_100")
    kernel = np.asarray(tied.kernel)
    tied.kernel.assign(kernel * 0)
    assert np.allclose(np.asarray(model(stripes(rng, 2))["reconstruction"]), 0.5)  # sigmoid(0 + 0 bias)


def test_linear_autoencoder_spans_the_pca_subspace(rng):
    """Seed 001: a linear AE trained with MSE learns the principal subspace."""
    basis = np.linalg.qr(rng.normal(size=(64, 4)))[0]
    codes = rng.normal(size=(2000, 4)) * np.array([1.0, 0.8, 0.6, 0.5])
    flat = 0.5 + codes @ basis.T + rng.normal(0, 0.02, (2000, 64))
    images = flat.reshape(-1, 8, 8, 1).astype(np.float32)
    recipe = ScorerRecipe(
        "pca", "", preset="linear", size=8, code=4, epochs=30, batch_size=64, lr=3e-2, holdout=0.1, report=False
    )
    model = fit_scorer(images, recipe).scorer.model
    decoder = np.asarray(model.get_layer("dec_pixels").kernel).T  # 64 x 4: the directions codes map to
    centred = flat - flat.mean(axis=0)
    pca = np.linalg.svd(centred, full_matrices=False)[2][:4].T
    cosines = np.linalg.svd(np.linalg.qr(decoder)[0].T @ pca, compute_uv=False)
    assert cosines.min() > 0.99, cosines


def test_scores_separate_and_calibration_holds(stripe_scorer):
    path, fitted = stripe_scorer
    scorer = Scorer.load(path)
    rng = np.random.default_rng(7)
    normal, odd = raw_scores(scorer, stripes(rng, 2000)), raw_scores(scorer, stripes(rng, 200, vertical=True))
    threshold = scorer.calibration.threshold
    assert abs(np.mean(normal >= threshold) - 0.05) < 0.03
    assert np.mean(odd >= threshold) > 0.95
    result, _ = scorer.score(stripes(rng, 1, vertical=True)[0])
    assert result.anomalous and result.score > 0.5


def test_prepare_converts_channels_and_size(rng):
    rgb = rng.random((30, 40, 3)).astype(np.float32)
    assert prepare(rgb, 28, 1).shape == (28, 28, 1)
    assert prepare(rgb[..., :1], 28, 3).shape == (28, 28, 3)
    white_cmyk = np.zeros((10, 10, 4), np.float32)
    assert np.allclose(prepare(white_cmyk, 8, 3), 1.0)


def test_train_cli_routes_seed_presets_to_the_scorer(tmp_path, rng):
    from denoise_train.cli import main

    data = tmp_path / "fashion"
    images = (stripes(rng, 120)[..., 0] * 255).astype(np.uint8)
    write_idx(data, "train", images, np.arange(120) % 2)
    write_idx(data, "t10k", images[:40], np.arange(40) % 2)
    out = tmp_path / "dense-2d.keras"
    result = CliRunner().invoke(
        main, ["--preset", "dense-2d", "--data", str(data), "--out", str(out), "--label", "1", "--epochs", "1"]
    )
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["images"] == 60 and card["training"]["label"] == 1
    assert card["architecture"]["code"] == 2 and out.with_suffix(".report.png").exists()


def test_score_command_writes_scores_and_heatmaps(tmp_path, stripe_scorer, rng):
    from denoiser.cli import main
    from tests.helpers import write_image

    inbox = tmp_path / "in"
    write_image(inbox / "normal.png", (stripes(rng, 1)[0, ..., 0] * 255).astype(np.uint8))
    write_image(inbox / "sub" / "odd.png", (stripes(rng, 1, 60, vertical=True)[0, ..., 0] * 255).astype(np.uint8))
    (inbox / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["score", str(inbox), str(out), "-S", str(stripe_scorer[0]), "-H", "-r"])
    assert result.exit_code == 1, result.output  # one input failed
    records = {r["input"].split("/")[-1]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    assert records["broken.png"]["status"] == "failed" and records["broken.png"]["error"]
    assert records["odd.png"]["anomalous"] and not records["normal.png"]["anomalous"]
    assert records["odd.png"]["score"] > records["normal.png"]["score"]
    assert heatmap_path(out / "sub" / "odd.png").is_file() and records["odd.png"]["output"] is None
    assert sorted(p.name for p in inbox.rglob("*")) == ["broken.png", "normal.png", "odd.png", "sub"]


def test_batch_writes_heatmaps_with_a_given_scorer(tmp_path, stripe_scorer, tiny_models, rng):
    from denoiser.cli import main
    from tests.helpers import write_image

    write_image(tmp_path / "in" / "a.png", (stripes(rng, 1, 40)[0, ..., 0] * 255).astype(np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "batch",
            str(tmp_path / "in"),
            str(out),
            "-m",
            str(tiny_models["gray"]),
            "--scorer",
            str(stripe_scorer[0]),
            "--heatmaps",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "scores.jsonl").read_text())
    assert entry["scorer"] == "stripes" and entry["heatmap"] == str(heatmap_path(out / "a.png"))
    from PIL import Image

    with Image.open(entry["heatmap"]) as heat:
        assert heat.size == (40, 40) and heat.mode == "RGB"


def pink(rng, count: int, size: int = 112) -> list[np.ndarray]:
    """Stand-ins for natural photos: colour noise with a 1/f amplitude spectrum, as photos have."""
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    out = []
    for _ in range(count):
        field = np.real(
            np.fft.ifft2(
                np.fft.fft2(rng.normal(size=(size, size, 3)), axes=(0, 1))
                / np.maximum(frequency, 1.0 / size)[..., None],
                axes=(0, 1),
            )
        )
        field = (field - field.mean()) / field.std() * rng.uniform(0.1, 0.2) + rng.uniform(0.3, 0.7)
        out.append(np.round(np.clip(field, 0, 1) * 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """50 1/f images as PNG files: the normal photos of the photo scorers below."""
    from tests.helpers import write_image

    folder = tmp_path_factory.mktemp("photo")
    for i, image in enumerate(pink(np.random.default_rng(3), 50)):
        write_image(folder / "normal" / f"{i:03d}.png", image)
    return folder


def train_photo_scorer(folder, name: str, *extra: str):
    """A photo scorer trained through `python -m denoise_train scorer --preset photo` on the folder's images."""
    from denoise_train.cli import main

    out = folder / f"{name}.keras"
    data = ("--data", str(folder / "normal"), "--out", str(out))
    options = ("--crops", "2", "--holdout", "0.3", "--neighbours", "3", *extra)
    result = CliRunner().invoke(main, ["scorer", "--preset", "photo", *data, *options])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def photo_scorer(photo_folder):
    return train_photo_scorer(photo_folder, "photo")


@pytest.fixture(scope="module")
def damage_scorer(photo_folder):
    """The same, with a narrow damage network trained for 3 batches (too few to learn: the plumbing is the point)."""
    return train_photo_scorer(photo_folder, "damage", "--damage-steps", "3", "--damage-width", "8")


def test_photo_scorer_card_and_artifact(photo_scorer):
    from denoiser.anomaly import PhotoScorer

    scorer = Scorer.load(photo_scorer)
    card = json.loads(photo_scorer.with_suffix(".json").read_text())
    assert isinstance(scorer, PhotoScorer) and card["kind"] == "photo" and card["architecture"]["preset"] == "photo"
    assert card["training"]["images"] == 40 and card["training"]["validation_left_out"] == 10  # every 5th file
    assert card["training"]["calibration_files"] == 12 and set(card["scales"]) == {"global", "range", "local"}
    assert {type(layer).__name__ for layer in scorer.model.layers} == {"InputLayer", "Dense"}
    assert scorer.bank.shape == (card["training"]["fitting_views"], 22)


def test_photo_scorer_passes_held_out_photos_and_flags_odd_inputs(photo_scorer):
    scorer = Scorer.load(photo_scorer)
    rng = np.random.default_rng(11)
    normal = [scorer.score(image.astype(np.float32) / 255)[0] for image in pink(rng, 30)]
    odd = [
        np.full((120, 160, 3), 0.4, np.float32),
        rng.random((130, 150, 1)).astype(np.float32),
        np.clip(0.5 + rng.normal(0, 0.1, (140, 140, 3)), 0, 1).astype(np.float32),
        np.indices((128, 128)).sum(axis=0)[..., None] // 16 % 2 * np.ones(3, np.float32),
    ]
    flagged = [scorer.score(image)[0] for image in odd]
    assert sum(r.anomalous for r in normal) <= 2, normal
    assert all(r.anomalous and r.score > 0.5 for r in flagged), flagged
    assert all(0.0 <= r.score <= 1.0 for r in normal + flagged)
    assert min(r.raw for r in flagged) > np.median([r.raw for r in normal])


def test_photo_scorer_heatmap_points_at_a_pasted_square(photo_scorer):
    scorer = Scorer.load(photo_scorer)
    image = pink(np.random.default_rng(5), 1, 160)[0].astype(np.float32) / 255
    image[40:90, 60:110] = 0.5  # a flat gray square pasted in
    _, heat = scorer.score(image, heatmap=True)
    assert heat.shape == (160, 160) and 0.0 <= heat.min() and heat.max() <= 1.0
    assert heat[45:85, 65:105].mean() > 2 * heat[120:, :40].mean()


def test_a_damage_network_travels_in_the_scorer_with_its_calibration(damage_scorer):
    from denoiser.anomaly import DAMAGE

    scorer = Scorer.load(damage_scorer)
    card = json.loads(damage_scorer.with_suffix(".json").read_text())
    assert set(card["scales"]) == {"global", "range", "local", "damage"} and card["damage_pixel_threshold"] > 0
    assert card["training"]["damage_network"]["steps"] == 3 and scorer.damage.name == DAMAGE
    assert card["training"]["damage_network"]["width"] == 8 and width(scorer.damage) == 8
    image = pink(np.random.default_rng(8), 1, 200)[0][:150].astype(np.float32) / 255
    components, maps = scorer.components(image)
    assert 0.0 <= components["damage"] <= 1.0 and maps.damage.shape == (256, 341)
    result, heat = scorer.score(image, heatmap=True)
    assert heat.shape == (150, 200) and 0.0 <= heat.min() and heat.max() <= 1.0 and 0.0 <= result.score <= 1.0


def test_a_damage_network_is_reused_and_the_statistics_fitted_anew(photo_folder, damage_scorer, photo_scorer):
    from denoise_train.cli import main

    reused = Scorer.load(train_photo_scorer(photo_folder, "reused", "--damage-from", str(damage_scorer)))
    source = Scorer.load(damage_scorer)
    assert all(np.array_equal(a, b) for a, b in zip(reused.damage.get_weights(), source.damage.get_weights()))
    network = reused.card["training"]["damage_network"]
    assert network["reused_from"].startswith("damage.keras, sha256 ") and network["steps"] == 3
    assert [h["seconds"] for h in reused.card["training"]["history"]] == [
        source.card["training"]["seconds"],
        reused.card["training"]["seconds"],
    ]
    assert reused.scales == source.scales and reused.calibration == source.calibration  # same photos, same seed
    out = photo_folder / "none.keras"
    args = ["scorer", "--preset", "photo", "--data", str(photo_folder / "normal"), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--damage-from", str(photo_scorer)])
    assert result.exit_code == 1 and "holds no damage network" in result.output and not out.exists()
    result = CliRunner().invoke(main, [*args, "--damage-from", str(damage_scorer), "--damage-width", "8"])
    assert result.exit_code == 1 and "keeps its width" in result.output and not out.exists()


def test_a_reused_damage_network_trains_further_with_damage_steps(photo_folder, damage_scorer):
    options = ("--damage-steps", "2", "--damage-positive-weight", "10", "--precision", "bfloat16", "--workers", "2")
    further = Scorer.load(train_photo_scorer(photo_folder, "further", "--damage-from", str(damage_scorer), *options))
    source = Scorer.load(damage_scorer)
    assert not all(np.array_equal(a, b) for a, b in zip(further.damage.get_weights(), source.damage.get_weights()))
    network = further.card["training"]["damage_network"]
    assert network["steps"] == 2 and network["rate"] == 1e-3 and len(network["losses"]) == 1
    assert network["positive_weight"] == 10 and network["precision"] == "bfloat16"
    assert {weight.dtype for weight in further.damage.weights} == {"float32"}  # trained in bf16, stored in float32
    assert width(further.damage) == 8 and "width" not in network and network["continued"]["width"] == 8
    assert network["continued"]["positive_weight"] == 1 and "workers" not in further.card["training"]["recipe"]
    assert network["continued"]["reused_from"].startswith("damage.keras, sha256 ")
    assert network["continued"]["steps"] == 3 and network["continued"]["rate"] == 3e-3
    source_pass, this_pass = further.card["training"]["history"]  # the card's flat history: two passes
    assert source_pass["seconds"] == source.card["training"]["seconds"]
    assert this_pass["seconds"] == further.card["training"]["seconds"]


def test_calibration_views_are_the_ones_the_fit_calibrated_on(photo_folder, photo_scorer):
    from denoise_train.scorer import ScorerRecipe, calibration_views, photo_files
    from denoiser.scoring import calibrate

    scorer = Scorer.load(photo_scorer)
    recipe = ScorerRecipe(str(photo_folder / "normal"), "", preset="photo", crops=2, holdout=0.3, neighbours=3)
    views = calibration_views(photo_files(recipe)[0], recipe)
    assert len(views) == scorer.card["training"]["calibration_views"]
    raw = [scorer.raw(scorer.components(view)[0]) for view in views]
    assert calibrate(raw, recipe.fpr) == pytest.approx(scorer.calibration)


def test_a_fresh_damage_network_is_16_channels_wide_unless_told(monkeypatch):
    from denoise_train import run
    from denoise_train.scorer import damage_training

    monkeypatch.setattr(run, "training_precision", lambda choice: "float32")
    assert damage_training(ScorerRecipe("data", "out", damage_steps=1)).width == 16
    assert damage_training(ScorerRecipe("data", "out", damage_steps=1, damage_width=24)).width == 24


def width(damage) -> int:
    """A damage network's channels at full size."""
    return int(damage.get_layer("logits").kernel.shape[-2])


def test_damage_windows_are_painted_from_their_epoch_and_index(rng):
    from denoise_train.damage import Windows

    photos = [image.astype(np.float32) / 255 for image in pink(rng, 3, 140)]
    data = Windows(photos, batch_size=4, size=64, stream=(0, 0))
    first, again, later = data.batch(0, 1), data.batch(0, 1), data.batch(1, 1)
    assert first[0].shape == (4, 64, 64, 3) and first[1].shape == (4, 64, 64, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and not np.array_equal(first[0], later[0])
    assert not np.array_equal(first[0], Windows(photos, 4, 64, stream=(0, 1)).batch(0, 1)[0])  # another stream


def test_the_shipped_scorer_carries_its_damage_network():
    from denoiser.artifact import card_history

    scorer = Scorer.load("scorer")
    assert scorer.damage is not None and scorer.damage_threshold > 0 and scorer.brightening is not None
    assert set(scorer.scales) == {"global", "range", "local", "damage"}
    assert any("--damage-steps" in step["command"] for step in card_history(scorer.card))


@pytest.mark.parametrize("short", [32, 43, 64])
def test_the_shipped_scorer_passes_thumbnails_enlarged_by_nearly_whole_factors(short):
    from pathlib import Path

    from PIL import Image

    from benchmarks.anomaly_thumbnails import thumbnail

    scorer = Scorer.load("scorer")
    for path in sorted(Path(__file__).parents[1].joinpath("examples", "clean").iterdir()):
        with Image.open(path) as image:
            pixels = thumbnail(np.asarray(image), short).astype(np.float32) / 255
        score = scorer.score(pixels)[0]
        assert score.score < 0.5, (path.name, short, score)


@pytest.mark.parametrize("kind", ["scratch", "stain", "patch"])
def test_synthetic_damage_changes_the_image_where_its_mask_says(kind):
    from denoise_train import damage

    rng = np.random.default_rng(4)
    photo, donor = (image.astype(np.float32) / 255 for image in pink(rng, 2, 160))
    for _ in range(5):
        broken, mask = damage.damaged(photo, donor, rng, kinds=(kind,))
        change = np.abs(broken - photo).max(axis=-1)
        assert mask.any() and (change[mask > 0] > 2 / 255).mean() > 0.5, "the masked part changed"
        assert (mask[change > 0.1] > 0).mean() > 0.9, "what changed clearly is masked"


def test_a_gray_image_and_the_same_image_as_rgb_score_alike_to_the_bit(rng):
    from denoiser.anomaly_features import as_rgb, damage_canvas, global_features, local_features

    scorer = Scorer.load("scorer")
    gray = rng.random((301, 457, 1), dtype=np.float32)
    rgb = as_rgb(gray)
    assert rgb.shape == (301, 457, 3) and np.array_equal(rgb[..., 2], gray[..., 0])
    for features in (global_features, local_features, lambda pixels: damage_canvas(pixels)[0]):
        np.testing.assert_array_equal(features(gray), features(rgb))
    (gray_score, gray_map), (rgb_score, rgb_map) = scorer.score(gray, True), scorer.score(rgb, True)
    assert gray_score == rgb_score
    np.testing.assert_array_equal(gray_map, rgb_map)


def test_damage_canvas_has_a_bounded_set_of_shapes(rng):
    from denoiser.anomaly_features import DAMAGE_ALIGN, DAMAGE_LONG, DAMAGE_SHORT, damage_canvas

    shapes = set()
    for _ in range(60):
        height, width = (int(side) for side in rng.integers(20, 1500, 2))
        canvas, (h, w) = damage_canvas(np.zeros((height, width, 1), np.float32))
        assert min(h, w) <= DAMAGE_SHORT and max(h, w) <= DAMAGE_LONG
        assert min(h, w) == DAMAGE_SHORT or max(h, w) == DAMAGE_LONG
        assert canvas.shape[0] % DAMAGE_ALIGN == 0 and canvas.shape[1] % DAMAGE_ALIGN == 0 and canvas.shape[2] == 3
        shapes.add(canvas.shape)
    assert len(shapes) <= 2 * ((DAMAGE_LONG - DAMAGE_SHORT) // DAMAGE_ALIGN + DAMAGE_SHORT // DAMAGE_ALIGN)


def test_noise_level_estimate_and_statistics_shapes(rng):
    from denoiser.anomaly_features import GLOBAL_NAMES, LOCAL_NAMES, global_features, local_features, noise_sigma

    flat = 0.5 + rng.normal(0, 20 / 255, (256, 256))
    assert abs(noise_sigma(flat) * 255 - 20) < 1.5
    assert global_features(rng.random((90, 300, 3))).shape == (len(GLOBAL_NAMES),)
    assert local_features(rng.random((128, 256, 1))).shape == (15, 31, len(LOCAL_NAMES))


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 1), (1, 5000, 3), (5000, 1, 1), (3, 40000, 3)])
def test_the_shipped_scorer_flags_slivers_and_single_pixels_with_a_finite_score(shape, rng):
    from denoiser.anomaly_features import WORK, WORK_LONG, working_size

    (height, width), _ = working_size(*shape[:2])
    assert min(height, width) >= WORK and max(height, width) <= WORK_LONG, "the working copy stays bounded"
    score, heat = Scorer.load("scorer").score(rng.random(shape, dtype=np.float32), heatmap=True)
    assert np.isfinite(score.raw) and score.anomalous and score.score == 1.0, score
    assert heat.shape == shape[:2] and np.isfinite(heat).all()


def test_the_working_copy_of_a_photo_keeps_its_shape():
    from denoiser.anomaly_features import working_size

    assert working_size(321, 481)[0] == (128, 192) and working_size(4000, 6000)[0] == (128, 192)
    assert working_size(1000, 16000)[0] == (128, 2048) and working_size(1000, 20000)[0] == (128, 2048)


def test_a_record_without_a_finite_score_is_strict_json(tmp_path):
    from denoiser.pipeline import Job, record
    from denoiser.scoring import Score

    job = Job(tmp_path / "a.png", tmp_path / "out" / "a.png")
    line = record(job, 0.0, result=Score(float("nan"), float("nan"), False)).line()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    values = json.loads(line, parse_constant=refuse)
    assert values["score"] is None and values["raw_score"] is None and values["anomalous"] is False


def test_batch_records_score_the_input_not_the_cleaned_image(tmp_path, photo_scorer, tiny_models, rng):
    from denoiser.cli import main
    from denoiser.imageio import read_image
    from tests.helpers import write_image

    source = write_image(tmp_path / "in" / "noise.png", (rng.random((96, 96)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["batch", str(tmp_path / "in"), str(out), "-m", str(tiny_models["gray"]), "--scorer", str(photo_scorer), "-q"],
    )
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "scores.jsonl").read_text())
    scorer = Scorer.load(photo_scorer)
    expected = scorer.score(read_image(source).pixels)[0]
    assert abs(entry["raw_score"] - expected.raw) < 1e-6 and entry["anomalous"]
    assert abs(entry["raw_score"] - scorer.score(read_image(out / "noise.png").pixels)[0].raw) > 1e-3


def test_photo_scorer_measures_dark_images_also_brightened(photo_scorer):
    from denoiser.anomaly import PhotoScorer
    from denoiser.anomaly_features import BRIGHTER, DARK

    scorer = Scorer.load(photo_scorer)
    older = PhotoScorer(
        scorer.model, {"global": scorer.bank}, {k: v for k, v in scorer.card.items() if k != "brightening"}
    )
    photos = [image.astype(np.float32) / 255 for image in pink(np.random.default_rng(12), 80)]
    dark = [image for image in (photo**2.2 for photo in photos) if image.mean() < DARK]  # a darker tone curve
    assert scorer.brightening == (DARK, BRIGHTER) and older.brightening is None and len(dark) >= 12
    assert all(scorer.components(photo)[0] == older.components(photo)[0] for photo in photos[:5])  # measured once
    assert sum(older.score(image)[0].anomalous for image in dark) >= 0.8 * len(dark)
    assert sum(scorer.score(image)[0].anomalous for image in dark) <= 0.2 * len(dark)  # as the photos themselves
