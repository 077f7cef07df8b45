"""Training: noise synthesis, presets, and a short run that exports a loadable model with its card."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from denoiser.artifact import CARD_ENTRY, load_artifact, summary_card, write_summary
from denoiser.noise import NoiseSpec, degrade, parse_noise, psnr
from tests.helpers import stored_dtypes, tiny_residual, tiny_unet, write_image


def write_blocky_images(folder, rng, count: int = 21, cells: int = 6, channels: int = 1, prefix: str = ""):
    """`count` PNGs of cells x cells blocks of 8 px at random levels: quick to train on; returns the folder."""
    for i in range(count):
        pixels = np.kron(rng.random((cells, cells, channels)), np.ones((8, 8, 1)))
        write_image(folder / f"{prefix}{i:02d}.png", np.round(pixels * 255).astype(np.uint8).squeeze())
    return folder


def test_noise_is_quantized_to_8_bits(rng):
    clean = rng.random((32, 32, 1), dtype=np.float32)
    for spec in parse_noise("gauss:25,sp:10"):
        noisy = degrade(clean, spec, rng)
        assert np.array_equal(noisy, np.round(noisy * 255) / 255)
        assert noisy.min() >= 0 and noisy.max() <= 1


def test_gaussian_noise_has_the_requested_sigma(rng):
    clean = np.full((256, 256, 1), 0.5, np.float32)
    noisy = degrade(clean, NoiseSpec("gauss", 25), rng)
    assert abs(np.std(noisy) * 255 - 25) < 0.5
    assert abs(psnr(clean, noisy) - 20.17) < 0.1


def test_salt_and_pepper_hits_the_requested_share(rng):
    clean = np.full((200, 200, 3), 128 / 255, np.float32)
    noisy = degrade(clean, NoiseSpec("sp", 10), rng)
    hit = np.any(noisy != clean, axis=-1)
    assert abs(hit.mean() - 0.10) < 0.01
    assert set(np.unique(noisy[hit])) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", ["wm", "logo"])
def test_overlays_are_partial_at_the_given_opacity(rng, kind):
    from denoiser.noise import logo_mask, watermark_mask

    clean = rng.random((120, 160, 3), dtype=np.float32) * 0.5 + 0.25
    mask = {"wm": watermark_mask, "logo": logo_mask}[kind](120, 160, np.random.default_rng(3))
    assert 0.005 < (mask > 0).mean() < 0.7 and mask.max() > 0.9
    noisy = degrade(clean, NoiseSpec(kind, 40), np.random.default_rng(3))
    assert np.array_equal(noisy, np.round(noisy * 255) / 255)
    changed = np.abs(noisy - clean).max(axis=-1) > 1 / 255
    assert changed.any() and np.all(mask[changed] > 0), "only covered pixels change"
    assert np.abs(noisy - clean).max() <= 0.4 * 0.75 + 1 / 255


def test_every_logo_is_a_shape_with_holes_or_parts():
    from PIL import Image, ImageDraw
    from scipy.ndimage import binary_fill_holes, label

    from denoiser.noise import LOGO_SHAPES

    for kind, draw_logo in LOGO_SHAPES.items():
        layer = Image.new("L", (64, 64), 0)
        draw_logo(ImageDraw.Draw(layer), 0, 0, 64, 32, 32, 6)
        covered = np.asarray(layer) > 0
        assert 0.1 < covered.mean() < 0.8, kind
        holes, parts = binary_fill_holes(covered).sum() - covered.sum(), label(covered)[1]
        assert holes > 20 or parts > 1, f"{kind} is a plain blob"


def test_training_draws_each_degradation_at_its_share():
    from denoise_train.data import NoiseSettings

    draws = [NoiseSettings(sp_prob=0.2, wm_prob=0.3).sample(np.random.default_rng(i)).kind for i in range(2000)]
    assert abs(draws.count("sp") / 2000 - 0.2) < 0.03 and abs(draws.count("wm") / 2000 - 0.3) < 0.03


def test_task_trains_on_one_degradation_only():
    from denoise_train.run import Recipe

    assert Recipe("d", "o", task="watermark").noise.sample(np.random.default_rng(0)).kind == "wm"
    assert {Recipe("d", "o", task="static").noise.sample(np.random.default_rng(i)).kind for i in range(50)} == {"sp"}


def test_training_watermarks_use_other_fonts_texts_and_logos_than_evaluation(tmp_path):
    from denoise_train.data import training_watermarks
    from denoiser.noise import HELD_OUT, LOGO_SHAPES, LOGOS

    with pytest.raises(FileNotFoundError, match="fonts-dejavu-core"):
        training_watermarks(tmp_path)
    try:
        style = training_watermarks(logo_share=0.5)
    except FileNotFoundError:
        pytest.skip("no DejaVu fonts on this machine")
    assert not set(style.texts) & set(HELD_OUT.texts) and None not in style.fonts
    assert style.logos and not set(style.logos) & set(LOGOS) and set(style.logos) <= set(LOGO_SHAPES)


def test_a_style_draws_logos_in_its_share_of_watermarks_and_text_as_before_otherwise():
    from denoiser.noise import HELD_OUT, logo_mask, overlay_mask, watermark_mask

    def draw(function, *args, skip=0):
        rng = np.random.default_rng(5)
        rng.random(skip)
        return function(90, 120, rng, *args)

    assert np.array_equal(draw(overlay_mask, HELD_OUT), draw(watermark_mask, HELD_OUT)), "no extra draw for text"
    logos = HELD_OUT._replace(logos=("cross", "bars"), logo_share=1.0)
    assert np.array_equal(draw(overlay_mask, logos), draw(logo_mask, ("cross", "bars"), skip=1))


def test_bad_noise_spec_is_refused():
    with pytest.raises(ValueError, match="bad noise spec"):
        parse_noise("blur:3")


def test_seed_preset_is_the_seed_architecture():
    from denoise_train.presets import seed

    model = seed(1)
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "UpSampling2D",
        "Conv2DTranspose",
        "UpSampling2D",
        "Conv2DTranspose",
    ]
    assert [getattr(layer, "filters", None) for layer in model.layers] == [16, None, 8, None, 8, None, 8, None, 1]
    assert model.input_shape == (None, None, None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"


@pytest.mark.parametrize(
    "preset, channels", [("residual", 1), ("seed", 3), ("unet", 1), ("unet-half", 1), ("unet-lite", 1), ("matte", 3)]
)
def test_short_training_run_exports_model_and_card(tmp_path, rng, preset, channels):
    from denoise_train.run import Recipe, train_and_export

    data = write_blocky_images(tmp_path / "clean", rng, channels=channels)
    out = tmp_path / "model" / "m.keras"
    recipe = Recipe(
        str(data),
        str(out),
        preset=preset,
        channels=channels,
        depth=3,
        width=8,
        epochs=2,
        steps=3,
        batch_size=4,
        patch=32,
        precision="float32",
    )
    train_and_export(recipe, "python -m denoise_train --test")

    artifact = load_artifact(out)
    card = json.loads(zipfile.ZipFile(out).read(CARD_ENTRY))
    assert card == artifact.card and json.loads(out.with_suffix(".json").read_text()) == summary_card(card)
    assert card["command"] == "python -m denoise_train --test"
    assert card["architecture"]["preset"] == preset
    assert (
        card["size_multiple"]
        == {"seed": 4, "residual": 1, "unet": 8, "unet-half": 16, "unet-lite": 16, "matte": 8}[preset]
    )
    assert len(card["training"]["files"]) == 19 and len(card["training"]["validation_files"]) == 2
    assert len(card["training"]["fingerprint_sha256"]) == 64
    assert set(card["metrics"]["validation"]) == {"gauss:15", "gauss:25", "gauss:50", "sp:10", "wm:40"}
    assert artifact.model.input_shape == artifact.model.output_shape == (None, None, None, channels)
    assert all(layer.dtype_policy.name == "float32" for layer in artifact.model.layers)
    assert set(stored_dtypes(out)) == {"float16"}, "export rounds the weights to float16 and stores them so"


def test_fine_tuning_starts_from_the_init_weights_and_records_its_lineage(tmp_path, rng):
    from denoise_train.run import train_and_export

    data = write_blocky_images(tmp_path / "clean", rng)
    base = tiny_unet(data, tmp_path / "base.keras")
    train_and_export(base, "python -m denoise_train --base")
    tuned = base._replace(out=str(tmp_path / "tuned.keras"), init=base.out, lr=1e-9, task="static")
    train_and_export(tuned, "python -m denoise_train --tuned")
    tuned = train_and_export(
        tuned._replace(out=str(tmp_path / "again.keras"), init=tuned.out), "python -m denoise_train --again"
    )

    parent, child = load_artifact(tmp_path / "base.keras"), load_artifact(tuned)
    for a, b in zip(parent.model.get_weights(), child.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    weighted = sum(bool(layer.weights) for layer in child.model.layers)
    assert child.card["training"]["init_layers"] == f"{weighted} of {weighted}"
    history = child.card["training"]["history"]
    assert [p["command"] for p in history] == [f"python -m denoise_train --{n}" for n in ("base", "tuned", "again")]
    assert all(p["epochs"] == 1 and p["seconds"] > 0 and p["loss"] > 0 for p in history)
    assert parent.card["training"]["history"] == history[:1]


def test_the_card_beside_a_model_summarises_the_one_inside(tmp_path):
    card = {
        "name": "m",
        "command": "python -m denoise_train --c",
        "training": {
            "data": ["a", "b"],
            "folder_images": {"a": 3, "b": 2},
            "files": ["1", "2", "3", "4"],
            "validation_files": ["5"],
            "fingerprint_sha256": "f",
            "seconds": 9.0,
            "epochs_run": 2,
            "final_loss": 0.5,
            "init_card": {"command": "python -m denoise_train --b", "training": {"seconds": 4.0, "final_loss": 0.7}},
        },
    }
    summary = summary_card(card)
    assert summary["training"] == {
        "data": [{"folder": "a", "images": 3}, {"folder": "b", "images": 2}],
        "images": 4,
        "validation_images": 1,
        "fingerprint_sha256": "f",
        "seconds": 9.0,
        "epochs_run": 2,
        "final_loss": 0.5,
        "history": [
            {"command": "python -m denoise_train --b", "seconds": 4.0, "epochs": None, "loss": 0.7},
            {"command": "python -m denoise_train --c", "seconds": 9.0, "epochs": 2, "loss": 0.5},
        ],
    }
    sidecar = tmp_path / "m.json"
    sidecar.write_text(
        json.dumps({"intended_use": "tests", "command": "make m", "metrics": {"development": {"psnr": 30}}})
    )
    write_summary(tmp_path / "m.keras", card | {"metrics": {"validation": 1}}, keep_hand_written=True)
    kept = json.loads(sidecar.read_text())
    assert (kept["intended_use"], kept["command"], kept["metrics"]) == (
        "tests",
        "make m",
        {"validation": 1, "development": {"psnr": 30}},
    )
    assert kept["training"]["history"] == summary["training"]["history"]
    write_summary(tmp_path / "m.keras", card)
    assert json.loads(sidecar.read_text()) == summary


def test_a_matte_model_inverts_the_blend_it_estimates(rng):
    from denoise_train.presets import matte

    model = matte(3, width=8, levels=2)
    opacity, colour = 0.4, np.array([0.9, 0.2, 0.5], np.float32)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    for name, bias in (("matte_logit", [logit(opacity)]), ("overlay_colour", logit(colour))):
        kernel, _ = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([np.zeros_like(kernel), np.asarray(bias, np.float32)])
    clean = rng.random((1, 16, 24, 3), dtype=np.float32)
    noisy = (1 - opacity) * clean + opacity * colour
    np.testing.assert_allclose(model.predict_on_batch(noisy), clean, atol=1e-5)


def test_patches_give_the_watermark_matte_as_a_second_target(rng):
    from denoise_train.data import NoiseSettings, Patches

    try:
        patches = Patches(
            [rng.random((96, 128, 1), dtype=np.float32)],
            NoiseSettings(sp_prob=0.3, wm_prob=0.5),
            patch=64,
            batch_size=24,
            mattes=True,
        )
    except FileNotFoundError:
        pytest.skip("no DejaVu fonts on this machine")
    noisy, target = patches.batch(0, 0)
    clean, matte = target["clean"], target["matte"]
    assert matte.shape == clean.shape[:3] + (1,) and noisy.shape == clean.shape
    marked = matte.max(axis=(1, 2, 3)) > 0
    assert 0 < marked.sum() < len(marked)
    for n, c, m in zip(noisy[marked], clean[marked], matte[marked]):
        assert np.all(np.abs(n - c)[m[..., 0] == 0] <= 0.5 / 255 + 1e-6)  # untouched but for 8-bit rounding
        assert 0 < m.max() <= 0.6


def test_init_copies_the_layers_two_presets_share(rng):
    from denoise_train.presets import matte, unet
    from denoise_train.run import transfer_weights

    source, target = unet(1, width=8, levels=2), matte(1, width=8, levels=2)
    shared = [layer.name for layer in source.layers if layer.weights and layer.name not in ("noise",)]
    assert transfer_weights(source, target) == len(shared)
    for name in shared:
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert transfer_weights(unet(1, width=16, levels=2), target) == 0


@pytest.mark.parametrize("growth, new_conv", [({"bottom": 4}, "bottom_d_b"), ({"decoder": 3}, "dec0_3_b")])
def test_a_net_grown_with_more_blocks_starts_out_computing_what_its_parent_does(rng, growth, new_conv):
    from denoise_train.presets import matte
    from denoise_train.run import transfer_weights

    parent, grown = matte(1, width=8, levels=2), matte(1, width=8, levels=2, **growth)
    assert transfer_weights(parent, grown) == sum(bool(layer.weights) for layer in parent.layers)
    assert len(grown.layers) > len(parent.layers)
    noisy = rng.random((1, 32, 24, 1), dtype=np.float32)
    np.testing.assert_allclose(grown.predict_on_batch(noisy), parent.predict_on_batch(noisy), atol=1e-6)
    kernel, bias = grown.get_layer(new_conv).get_weights()
    grown.get_layer(new_conv).set_weights([kernel, bias + 1.0])
    assert np.abs(grown.predict_on_batch(noisy) - parent.predict_on_batch(noisy)).max() > 1e-4  # the block counts


def test_a_second_stage_starts_out_computing_what_its_frozen_first_stage_does(rng, tmp_path):
    import keras

    from denoise_train.presets import matte
    from denoise_train.run import transfer_weights

    first = matte(1, width=8, levels=2)
    second = matte(1, width=8, levels=2, first=first)
    assert transfer_weights(first, second) == sum(bool(layer.weights) for layer in first.layers)
    noisy = rng.random((2, 32, 24, 1), dtype=np.float32)
    np.testing.assert_allclose(second.predict_on_batch(noisy), first.predict_on_batch(noisy), atol=1e-6)
    before = [w.copy() for w in first.get_weights()]
    second.compile(keras.optimizers.Adam(1e-2), "mse")
    second.fit(noisy, np.clip(noisy - 0.1, 0, 1), epochs=2, verbose=0)
    for a, b in zip(before, first.get_weights()):
        np.testing.assert_array_equal(a, b)  # the first stage stays frozen
    assert np.abs(second.get_layer("hint_head").get_weights()[0]).max() > 0  # and the hints are learnt
    second.save(tmp_path / "two.keras")
    loaded = keras.saving.load_model(tmp_path / "two.keras")  # stock layers only: safe_mode holds
    np.testing.assert_allclose(loaded.predict_on_batch(noisy), second.predict_on_batch(noisy), atol=1e-6)


def test_training_on_several_folders_uses_and_records_them_all(tmp_path, rng):
    from click.testing import CliRunner

    from denoise_train.cli import main

    for folder, count in (("gray", 12), ("colour", 9)):
        write_blocky_images(tmp_path / folder, rng, count, channels=3, prefix=folder)
    out = tmp_path / "m.keras"
    result = CliRunner().invoke(
        main,
        [
            "-d",
            str(tmp_path / "gray"),
            "-d",
            str(tmp_path / "colour"),
            "-o",
            str(out),
            "--width",
            "8",
            "--levels",
            "2",
            "-e",
            "1",
            "-s",
            "2",
            "-b",
            "4",
            "--patch",
            "32",
            "--precision",
            "float32",
        ],
    )

    assert result.exit_code == 0, result.output
    training = load_artifact(out).card["training"]
    assert training["data"] == [str(tmp_path / "gray"), str(tmp_path / "colour")]
    names = training["files"] + training["validation_files"]
    assert len(names) == 21 and {name[:4] for name in names} == {"gray", "colo"}


def test_training_on_images_smaller_than_the_patch_stops_with_a_clear_error_and_writes_nothing(tmp_path, rng):
    from click.testing import CliRunner

    from denoise_train.cli import main

    write_blocky_images(tmp_path / "small", rng, 6, channels=1)
    out = tmp_path / "m.keras"
    result = CliRunner().invoke(main, ["-d", str(tmp_path / "small"), "-o", str(out), "--patch", "256", "-e", "1"])

    assert result.exit_code == 1 and not out.exists()
    assert f"no training image in {tmp_path / 'small'} is at least --patch 256 px" in result.output


def test_a_resumed_run_goes_on_with_new_noise_draws_instead_of_repeating_the_first(tmp_path, rng, monkeypatch):
    import keras

    from denoise_train.data import Patches
    from denoise_train.run import build, fit

    recipe = tiny_residual(epochs=3, steps=2, checkpoint_dir=str(tmp_path / "checkpoints"))
    images = [rng.random((24, 24, 1), dtype=np.float32) for _ in range(3)]
    epochs_drawn = []
    draw = Patches.batch
    monkeypatch.setattr(
        Patches, "batch", lambda self, epoch, index: epochs_drawn.append(epoch) or draw(self, epoch, index)
    )
    save = keras.callbacks.BackupAndRestore.on_epoch_end

    def save_then_stop_after_the_second_epoch(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end", save_then_stop_after_the_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            fit(build(recipe), images, recipe)
    steps = recipe.steps  # Keras also peeks at epoch 0's first batch before training, to learn its shapes
    assert epochs_drawn[-2 * steps :] == [0] * steps + [1] * steps
    epochs_drawn.clear()
    fit(build(recipe), images, recipe)
    assert epochs_drawn[-steps:] == [2] * steps, "the resumed run draws the third epoch's noise"


def test_seams_command_measures_again_what_export_measured(tmp_path, rng):
    from click.testing import CliRunner

    from denoise_train.cli import main
    from denoise_train.run import train_and_export
    from denoiser.artifact import save_artifact

    data = write_blocky_images(tmp_path / "clean", rng, cells=16)
    recipe = tiny_unet(data, tmp_path / "m.keras")
    out = train_and_export(recipe, "python -m denoise_train --test")
    artifact = load_artifact(out)
    card = artifact.card
    assert 0 < card["seam_radius"] <= card["receptive_radius"]
    save_artifact(artifact.model, {k: v for k, v in card.items() if k != "seam_radius"} | {"receptive_radius": 1}, out)
    result = CliRunner().invoke(main, ["seams", str(out)])
    assert result.exit_code == 0
    assert f"receptive radius {card['receptive_radius']}, seam radius {card['seam_radius']}" in result.output
    assert load_artifact(out).card == card and json.loads(out.with_suffix(".json").read_text()) == summary_card(card)


def test_a_timed_run_decays_the_rate_over_its_minutes_and_stops_before_it_would_overrun():
    from types import SimpleNamespace

    from denoise_train.run import LR_FLOOR, TimedCosine

    now = [0.0]
    callback = TimedCosine(1e-3, 100.0, clock=lambda: now[0])
    model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=None), stop_training=False)
    callback.set_model(model)
    callback.on_train_begin()
    rates, stopped = [], []
    for epoch in range(3):  # epochs of 30 s: after the third, a fourth would end at 120 s
        callback.on_epoch_begin(epoch)
        rates.append(model.optimizer.learning_rate)
        now[0] += 30.0
        callback.on_epoch_end(epoch)
        stopped.append(model.stop_training)
    assert stopped == [False, False, True]
    assert rates[0] == pytest.approx(1e-3) and rates[0] > rates[1] > rates[2] > LR_FLOOR * 1e-3
    assert rates[1] == pytest.approx(1e-3 * (LR_FLOOR + (1 - LR_FLOOR) * (1 + np.cos(0.3 * np.pi)) / 2))
    now[0] = 250.0
    callback.on_epoch_begin(3)
    assert model.optimizer.learning_rate == pytest.approx(LR_FLOOR * 1e-3), "past the budget, the floor"


def test_a_timed_run_ends_on_time_and_its_card_says_how_many_epochs_ran(tmp_path, rng):
    from denoise_train.run import Recipe, train_and_export

    data = write_blocky_images(tmp_path / "clean", rng)
    recipe = Recipe(
        str(data),
        str(tmp_path / "m.keras"),
        preset="residual",
        depth=2,
        width=4,
        minutes=1e-4,
        steps=2,
        batch_size=2,
        patch=16,
        precision="float32",
    )
    training = load_artifact(train_and_export(recipe, "python -m denoise_train --test")).card["training"]
    assert training["epochs_run"] == 1 and training["recipe"]["minutes"] == 1e-4
    assert training["device"] == "cpu"


def test_worker_processes_draw_each_epochs_noise(rng, monkeypatch):
    from denoise_train.data import Patches
    from denoise_train.feeding import Batches
    from denoise_train.run import build, fit

    recipe = tiny_residual(epochs=3, steps=2, workers=2, processes=True)
    images = [rng.random((24, 24, 1), dtype=np.float32) for _ in range(3)]
    asked, made = [], []
    ask, make = Batches.__getitem__, Patches.batch
    monkeypatch.setattr(Batches, "__getitem__", lambda self, index: asked.append(self.epoch) or ask(self, index))
    monkeypatch.setattr(Patches, "batch", lambda self, *at: made.append(at) or make(self, *at))  # only here
    fit(build(recipe), images, recipe)
    steps = recipe.steps  # the first epoch also asks for batches that Keras peeks at
    assert asked[-3 * steps :] == [0] * steps + [1] * steps + [2] * steps
    assert not made  # every batch was made in a worker process, which has the unpatched Patches


def test_spawned_workers_make_the_same_batches_as_threads_and_end_with_their_block(rng):
    import multiprocessing

    from denoise_train.data import NoiseSettings, Patches
    from denoise_train.feeding import Batches

    maker = Patches([rng.random((40, 40, 1), dtype=np.float32)], NoiseSettings(sp_prob=0.5), 16, 4, seed=3)
    with Batches(maker, steps=2, workers=2, processes=True) as spawned:
        spawned.epoch = 1
        made = spawned[1]
        assert len(multiprocessing.active_children()) >= 1
    assert not multiprocessing.active_children()
    threaded = Batches(maker, steps=2, workers=2)
    threaded.epoch = 1
    assert all(np.array_equal(a, b) for a, b in zip(made, threaded[1]))
    assert not np.array_equal(made[0], threaded[0][0])


def test_a_run_with_ema_ends_with_the_average_of_its_weights_not_the_last(rng):
    import keras

    from denoise_train.run import build, fit

    images = [rng.random((24, 24, 1), dtype=np.float32) for _ in range(3)]

    def trained(steps: int, ema: float) -> np.ndarray:
        """The weights, flattened, after `steps` batches from the same start on the same draws."""
        keras.utils.set_random_seed(0)
        recipe = tiny_residual(epochs=1, steps=steps, lr=1e-2, ema=ema)
        model = build(recipe)
        fit(model, images, recipe)
        return np.concatenate([w.ravel() for w in model.get_weights()])

    first_step = trained(1, 0.0)

    def share_kept(weights: np.ndarray) -> float:
        """The share of weights still where the first step put them (a weight whose first gradient is about
        zero takes a step of rounding noise's sign, so not all)."""
        return float(np.mean(np.abs(weights - first_step) < 1e-4))

    # the average starts at the first step's weights and, at this momentum, barely moves from them
    assert share_kept(trained(6, 0.9999)) > 0.9
    assert share_kept(trained(6, 0.0)) < 0.1


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_a_matte_run_weighs_the_opacity_loss_by_its_matte_weight(rng, weight):
    from denoise_train.run import Recipe, build, fit

    images = [rng.random((24, 24, 1), dtype=np.float32) for _ in range(3)]
    recipe = Recipe(
        "d",
        "o",
        preset="matte",
        width=4,
        levels=2,
        task="watermark",
        epochs=1,
        steps=2,
        batch_size=2,
        patch=16,
        matte_weight=weight,
    )
    logs = fit(build(recipe), images, recipe).history
    assert logs["matte_loss"][0] > 0
    assert logs["loss"][0] == pytest.approx(logs["clean_loss"][0] + weight * logs["matte_loss"][0], rel=1e-3)
