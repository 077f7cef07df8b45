"""Train a whole-image autoencoder on normal images, calibrate it on held-out ones and export it as a scorer."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import keras
import numpy as np

from denoise_train.autoencoders import AUTOENCODERS, build_autoencoder
from denoise_train.data import fingerprint, idx_pair, list_images, load_idx, random_condition
from denoiser import __version__
from denoiser.anomaly import DAMAGE, WHITENING, Scorer, Standardiser, prepare, write_banks
from denoiser.anomaly_features import LOCAL_NAMES
from denoiser.artifact import card_history, read_card, save_artifact
from denoiser.imageio import read_image
from denoiser.scoring import calibrate

if TYPE_CHECKING:
    from denoise_train.damage import DamageTraining


UNRECORDED = ("data", "out", "workers", "processes")  # recipe fields the card leaves out: paths and batch painters
PATCHES = 40  # random patches of each fitting view whose statistics a photo scorer's `local` Gaussian is fitted on


class ScorerRecipe(NamedTuple):
    """Everything that decides a scorer's training run."""

    data: str
    out: str
    preset: str = "conv-ae"
    size: int = 28
    channels: int = 1
    code: int | None = None
    label: int | None = None
    crops: int = 0
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    holdout: float = 0.2
    fpr: float = 0.01
    neighbours: int = 10
    bank: int = 10000
    weights: str | None = None  # default: pixels:1,edges:1 (plus rotation:0.5 with the rotation head)
    rotation: bool | None = None  # default: on for conv-ae, off for the seed presets (the linear one stays PCA)
    report: bool = True
    seed: int = 0
    damage_steps: int = 0  # photo preset: training steps of its damage network (0: none)
    damage_from: str | None = None  # photo preset: a photo scorer whose damage network to reuse (or train further)
    damage_positive_weight: float = 1.0  # photo preset: loss weight of damaged pixels against whole ones
    damage_width: int | None = None  # photo preset: channels at full size of a fresh damage network (None: WIDTH)
    precision: str = "auto"  # of the damage network's training: auto, float32 or bfloat16
    workers: int = 1  # threads (or processes) that paint the damage network's training windows
    processes: bool = False

    @property
    def turns(self) -> bool:
        """Whether to train the rotation head."""
        return self.preset == "conv-ae" if self.rotation is None else self.rotation

    @property
    def component_weights(self) -> dict:
        """The weights of the standardised components in the raw score."""
        default = "pixels:1,edges:1" + (",rotation:0.5" if self.turns else "")
        return parse_weights(self.weights or default)


class Fitted(NamedTuple):
    """A trained scorer and what its report needs."""

    scorer: Scorer
    history: dict
    held_out: np.ndarray
    seconds: float


def parse_weights(text: str) -> dict:
    """`recon:1,latent:1` as {"recon": 1.0, "latent": 1.0}."""
    pairs = [item.split(":") for item in text.split(",") if item]
    return {name: float(value) for name, value in pairs}


def fit_scorer(images: np.ndarray, recipe: ScorerRecipe) -> Fitted:
    """Train on most of `images` (N x size x size x C in [0, 1]), calibrate on the held-out rest.

    The held-out images fix each component's mean and spread, the raw-score threshold at the
    recipe's false-positive rate, and the per-pixel threshold of the anomaly maps.
    """
    keras.utils.set_random_seed(recipe.seed)
    order = np.random.default_rng(recipe.seed).permutation(len(images))
    cut = max(1, int(round(len(images) * recipe.holdout)))
    held_out, fitting = images[order[:cut]], images[order[cut:]]

    trainer, model = build_autoencoder(recipe.preset, recipe.size, recipe.channels, recipe.code, recipe.turns)
    started = time.time()
    history = train(trainer, fitting, held_out, recipe)
    seconds = time.time() - started

    remembered = fitting[np.random.default_rng(recipe.seed).permutation(len(fitting))[: recipe.bank]]
    scorer = calibrated(model, bank_views(model, remembered), held_out, recipe)
    return Fitted(scorer, history.history, held_out, seconds)


def train(trainer, fitting: np.ndarray, held_out: np.ndarray, recipe: ScorerRecipe) -> keras.callbacks.History:
    """Fit the reconstruction (and, with a rotation head, the quarter turn of every image in its four turns)."""
    optimizer, loss = keras.optimizers.Adam(recipe.lr), AUTOENCODERS[recipe.preset].loss
    if recipe.turns:
        turn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        trainer.compile(
            optimizer,
            loss={"reconstruction": loss, "rotation": turn},
            loss_weights={"reconstruction": 1.0, "rotation": 0.1},
        )
        (inputs, targets), validation = turned(fitting), turned(held_out)
    else:
        trainer.compile(optimizer, loss=loss)
        (inputs, targets), validation = (fitting, fitting), (held_out, held_out)
    return trainer.fit(
        inputs, targets, batch_size=recipe.batch_size, epochs=recipe.epochs, validation_data=validation, verbose=2
    )


def turned(images: np.ndarray) -> tuple[np.ndarray, dict]:
    """Inputs and targets for the rotation task: each image in its four quarter turns, and which turn."""
    inputs = np.concatenate([np.rot90(images, turns, axes=(1, 2)) for turns in range(4)])
    return inputs, {"reconstruction": inputs, "rotation": np.repeat(np.arange(4), len(images))}


def bank_views(model, images: np.ndarray, batch: int = 512) -> dict:
    """The model's views (its outputs but the reconstruction and rotation) of normal images, rounded to float16 as
    they are stored, so that calibration sees exactly what ships."""
    views = [Scorer(model, {}, {}).views(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {
        name: np.concatenate([v[name] for v in views]).reshape(len(images), -1).astype(np.float16)
        for name in views[0]
        if name not in ("reconstruction", "rotation")
    }


def calibrated(model, banks: dict, held_out: np.ndarray, recipe: ScorerRecipe) -> Scorer:
    """The scorer with its standardiser, threshold and pixel threshold fitted to held-out normal images."""
    card = {"neighbours": recipe.neighbours}
    components, errors = measure_all(Scorer(model, banks, card), held_out)
    weights = recipe.component_weights
    if set(weights) - set(components):
        raise ValueError(
            f"weights name components this scorer lacks: {', '.join(sorted(set(weights) - set(components)))}"
            f" (it has {', '.join(components)})"
        )
    standardiser = Standardiser.fit(components, weights)
    calibration = calibrate(standardiser.combine(components), recipe.fpr)
    card |= {
        "standardiser": standardiser._asdict(),
        "calibration": calibration._asdict() | {"images": len(held_out)},
        "pixel_threshold": float(np.quantile(errors, 1.0 - recipe.fpr)),
    }
    return Scorer(model, banks, card)


def measure_all(scorer: Scorer, images: np.ndarray, batch: int = 512) -> tuple[dict, np.ndarray]:
    """Components and per-pixel errors for many prepared images, in batches."""
    parts = [scorer.measure(images[i : i + batch]) for i in range(0, len(images), batch)]
    components = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    return components, np.concatenate([p[1] for p in parts])


def raw_scores(scorer: Scorer, images: np.ndarray) -> np.ndarray:
    """Raw scores for many prepared images."""
    return scorer.raw(measure_all(scorer, images)[0])


def export_scorer(fitted: Fitted, recipe: ScorerRecipe, command: str, data: dict, probe=None) -> Path:
    """Write the scorer's `.keras` file (card and code bank inside), its `.json` card and its report.

    Args:
        data: where the training images came from, for the card.
        probe: optional (images, labels) whose codes the report plots, coloured by label.
    """
    scorer = fitted.scorer
    card = {
        "format": "denoise-card/1",
        "name": Path(recipe.out).stem,
        "task": "score",
        "channels": recipe.channels,
        "input_size": recipe.size,
        "architecture": {
            "preset": recipe.preset,
            "source": AUTOENCODERS[recipe.preset].source,
            "code": int(scorer.banks["latent"].shape[1]),
            "parameters": int(scorer.model.count_params()),
            "layers": [f"{layer.__class__.__name__}:{layer.name}" for layer in scorer.model.layers],
        },
        "score": "weighted sum of standardised components: recon = mean squared reconstruction error; "
        "latent, pixels, edges = mean distance to the nearest normal codes, shrunk images "
        "and oriented-gradient histograms",
        **scorer.card,
        "training": data
        | {
            "recipe": {k: v for k, v in recipe._asdict().items() if k not in UNRECORDED},
            "seconds": round(fitted.seconds, 1),
            "final_loss": float(fitted.history["loss"][-1]),
            "final_val_loss": float(fitted.history["val_loss"][-1]),
        },
        "command": command,
        "versions": {"denoise": __version__, "keras": keras.__version__, "backend": keras.backend.backend()},
    }
    path = save_artifact(scorer.model, card, recipe.out)
    write_banks(path, scorer.banks)
    if recipe.report:
        from denoise_train.report import write_report

        write_report(fitted, path.with_suffix(".report.png"), probe)
    return path


def normal_images(recipe: ScorerRecipe) -> tuple[np.ndarray, dict, tuple | None]:
    """The recipe's normal images at the scorer's input, where they came from, and a labelled probe set if any.

    Each data folder is either an IDX folder (Fashion-MNIST: its `train` split, optionally one label;
    the `t10k` split is the probe) or a folder of image files, each used whole plus `crops` random crops.
    """
    parts, files, probe = [], [], None
    rng = np.random.default_rng(recipe.seed)
    for folder in map(Path, recipe.data.split(os.pathsep)):
        pair = idx_pair(folder, "train")
        if pair:
            images, _ = load_idx(folder, "train", recipe.label)
            parts.append(np.stack([prepare(im, recipe.size, recipe.channels) for im in images]))
            files += list(pair)
            if idx_pair(folder, "t10k"):
                test, labels = load_idx(folder, "t10k")
                probe = (np.stack([prepare(im, recipe.size, recipe.channels) for im in test[:2000]]), labels[:2000])
        else:
            paths = list_images(folder)
            parts.append(np.stack([view for path in paths for view in views(read_image(path).pixels, recipe, rng)]))
            files += paths
    data = {
        "data": recipe.data.split(os.pathsep),
        "label": recipe.label,
        "images": int(sum(map(len, parts))),
        "fingerprint_sha256": fingerprint(files),
    }
    return np.concatenate(parts), data, probe


def views(pixels: np.ndarray, recipe: ScorerRecipe, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole image and `crops` random square crops (half to all of the short side, maybe mirrored)."""
    out = [prepare(pixels, recipe.size, recipe.channels)]
    height, width = pixels.shape[:2]
    for _ in range(recipe.crops):
        side = int(rng.uniform(0.5, 1.0) * min(height, width))
        y, x = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
        crop = pixels[y : y + side, x : x + side]
        out.append(prepare(crop[:, ::-1] if rng.random() < 0.5 else crop, recipe.size, recipe.channels))
    return out


def train_scorer(recipe: ScorerRecipe, command: str) -> Path:
    """Load the normal images, fit, calibrate and export (the photo preset: see `train_photo_scorer`)."""
    if recipe.preset == "photo":
        return train_photo_scorer(recipe, command)
    images, data, probe = normal_images(recipe)
    return export_scorer(fit_scorer(images, recipe), recipe, command, data, probe)


VALIDATION_EVERY = 5  # every 5th file of each photo folder is never fitted on: the benchmark's validation split


def validation_files(files: list[Path]) -> list[Path]:
    """The files of a photo folder that the photo scorer leaves out, for validating design choices."""
    return list(files)[::VALIDATION_EVERY]


def fitting_files(files: list[Path]) -> list[Path]:
    """The files of a photo folder that the photo scorer fits and calibrates on."""
    return [path for i, path in enumerate(files) if i % VALIDATION_EVERY]


def training_condition(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A normal view as the scorer must pass it: clean (35%), with Gaussian noise of sigma 0-55 (45%) or with
    0.5-12% static."""
    return random_condition(image, rng, clean=0.35, noisy=0.45, sigma=55, static=12)


def photo_views(files: list[Path], crops: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each file whole and as `crops` random crops (40-100% of each side, at least 96 px), each in a random
    training condition."""
    out = []
    for path in files:
        photo = read_image(path).pixels
        for view in [photo] + [random_crop(photo, rng) for _ in range(crops)]:
            out.append(training_condition(view, rng))
    return out


def random_crop(image: np.ndarray, rng: np.random.Generator, low: float = 0.4, minimum: int = 96) -> np.ndarray:
    """A random crop, its sides `low` to all of the image's, at least `minimum` pixels, maybe mirrored."""
    height, width = image.shape[:2]
    h = max(min(minimum, height), int(height * rng.uniform(low, 1.0)))
    w = max(min(minimum, width), int(width * rng.uniform(low, 1.0)))
    y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
    out = image[y : y + h, x : x + w]
    return out[:, ::-1] if rng.random() < 0.5 else out


def photo_features(views: list[np.ndarray], patches: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Global statistics of every view, and the statistics of `patches` random patches of each."""
    from denoiser.anomaly_features import global_features, local_features

    glob, local = [], []
    for view in views:
        glob.append(global_features(view))
        grid = local_features(view).reshape(-1, len(LOCAL_NAMES))
        local.append(grid[rng.choice(len(grid), min(patches, len(grid)), replace=False)])
    return np.stack(glob), np.concatenate(local)


def holdout_split(files: list[Path], recipe: ScorerRecipe, rng: np.random.Generator) -> tuple[list, list]:
    """A photo scorer's held-out (calibration) files and fitting files, drawn from `rng`."""
    order = rng.permutation(len(files))
    cut = max(1, int(round(len(files) * recipe.holdout)))
    return [files[i] for i in order[:cut]], [files[i] for i in order[cut:]]


def calibration_views(files: list[Path], recipe: ScorerRecipe) -> list[np.ndarray]:
    """The held-out views a photo scorer is calibrated on, drawn as `fit_photo_scorer` draws them."""
    rng = np.random.default_rng(recipe.seed)
    held_out, fitting = holdout_split(files, recipe, rng)
    photo_features(photo_views(fitting, recipe.crops, rng), PATCHES, rng)  # draws what the fit draws before them
    return photo_views(held_out, recipe.crops, rng)


def whitening(features: np.ndarray, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias that map features to whitened ones: squared norm = Mahalanobis distance (with the
    standardised covariance shrunk toward the identity by `shrink`)."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    covariance = np.cov((features - mean) / std, rowvar=False) + shrink * np.eye(features.shape[1])
    root = np.linalg.cholesky(np.linalg.inv(covariance))
    kernel = root / std[:, None]
    return kernel.astype(np.float32), (-(mean / std) @ root).astype(np.float32)


def ranges(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias that map each continuous global statistic (`RANGE_NAMES`) to its offset from the median in
    half-widths of its 1-99% range, and the others to 0."""
    from denoiser.anomaly_features import GLOBAL_NAMES, RANGE_NAMES

    low, middle, high = np.quantile(features, [0.01, 0.5, 0.99], axis=0)
    scale = np.array([name in RANGE_NAMES for name in GLOBAL_NAMES]) / np.maximum((high - low) / 2, 1e-3)
    return np.diag(scale).astype(np.float32), (-middle * scale).astype(np.float32)


def photo_model(kernels: dict, damage: keras.Model | None = None):
    """A Keras model whose Dense layers hold the maps of the global and local statistics (one per name), and the
    damage network as a sub-model when there is one."""
    inputs = {name: keras.Input((kernel.shape[0],), name=name) for name, (kernel, _) in kernels.items()}
    layers = {
        name: keras.layers.Dense(kernel.shape[1], name=f"{name}{WHITENING}") for name, (kernel, _) in kernels.items()
    }
    outputs = {name: layers[name](inputs[name]) for name in kernels}
    if damage is not None:
        inputs["image"] = keras.Input((None, None, 3), name="image")
        outputs[DAMAGE] = damage(inputs["image"])
    model = keras.Model(inputs, outputs, name="photo_scorer")
    for name, weights in kernels.items():
        layers[name].set_weights(list(weights))
    return model


def fit_photo_scorer(
    files: list[Path], recipe: ScorerRecipe, shrink: float = 0.01, patches: int = PATCHES, top: int = 3
) -> tuple[Scorer, dict]:
    """Fit the two Gaussians (and train the damage network) on most of `files`, calibrate on the held-out rest;
    returns the scorer and counts."""
    from denoise_train.damage import train_damage
    from denoiser.anomaly import PhotoScorer
    from denoiser.anomaly_features import BRIGHTER, DARK

    if recipe.damage_from and recipe.damage_width:
        raise ValueError("a reused damage network keeps its width: give --damage-width without --damage-from")
    rng = np.random.default_rng(recipe.seed)
    held_out, fitting = holdout_split(files, recipe, rng)
    glob, local = photo_features(photo_views(fitting, recipe.crops, rng), patches, rng)
    damage, damage_counts = None, {}
    if recipe.damage_from:
        damage, damage_counts = reused_damage(recipe.damage_from)
    if recipe.damage_steps:
        damage, trained = train_damage(fitting, damage_training(recipe), start=damage)
        damage_counts = trained | ({"continued": damage_counts} if damage_counts else {})
    kernels = {"global": whitening(glob, shrink), "range": ranges(glob), "local": whitening(local, shrink)}
    model = photo_model(kernels, damage)
    bank = np.asarray(model.get_layer(f"global{WHITENING}")(glob), np.float16)
    card = {
        "kind": PhotoScorer.KIND,
        "neighbours": recipe.neighbours,
        "top": top,
        "brightening": {"below": DARK, "power": BRIGHTER},
    }
    scorer = PhotoScorer(model, {"global": bank}, card)
    measured = [scorer.components(view) for view in photo_views(held_out, recipe.crops, rng)]
    components = {k: np.array([m[0][k] for m in measured]) for k in measured[0][0]}
    scales = {k: float(np.quantile(v, 1.0 - recipe.fpr)) for k, v in components.items()}
    card["scales"] = scales
    raw = np.max([components[k] / scales[k] for k in scales], axis=0)
    maps = [m[1] for m in measured]
    card |= {
        "calibration": calibrate(raw, recipe.fpr)._asdict() | {"images": len(raw)},
        "pixel_threshold": pixel_quantile([m.patches for m in maps], recipe.fpr),
    }
    if damage is not None:
        card["damage_pixel_threshold"] = pixel_quantile([m.damage for m in maps], recipe.fpr)
    counts = {
        "fitting_files": len(fitting),
        "fitting_views": len(glob),
        "fitting_patches": len(local),
        "calibration_files": len(held_out),
        "calibration_views": len(raw),
    } | ({"damage_network": damage_counts} if damage is not None else {})
    return PhotoScorer(model, {"global": bank}, card), counts


def damage_training(recipe: ScorerRecipe) -> DamageTraining:
    """How the recipe trains the damage network, its precision resolved."""
    from denoise_train.damage import WIDTH, DamageTraining
    from denoise_train.run import training_precision

    precision = training_precision(recipe.precision)
    return DamageTraining(
        recipe.damage_steps,
        recipe.seed,
        recipe.damage_positive_weight,
        precision,
        recipe.workers,
        recipe.processes,
        recipe.damage_width or WIDTH,
    )


def reused_damage(path: str) -> tuple[keras.Model, dict]:
    """A fresh copy of the damage network of the photo scorer at `path`, and where it came from, for the card."""
    from denoiser.anomaly import Scorer
    from denoiser.artifact import rebuild

    source = Scorer.load(path)
    if getattr(source, "damage", None) is None:
        raise ValueError(f"{path} holds no damage network to reuse")
    copy = rebuild(source.damage)
    trained = source.card.get("training", {}).get("damage_network", {})
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return copy, trained | {"reused_from": f"{Path(path).name}, sha256 {digest}"}


def reuse_history(recipe: ScorerRecipe, command: str, seconds: float) -> dict:
    """With a reused damage network, the card's history: the passes of the scorer it came from, then this one."""
    if not recipe.damage_from:
        return {}
    return {"history": card_history(read_card(recipe.damage_from)) + [{"command": command, "seconds": seconds}]}


def pixel_quantile(maps: list[np.ndarray], fpr: float) -> float:
    """The (1 - fpr) quantile of every value of the maps."""
    return float(np.quantile(np.concatenate([m.ravel() for m in maps]), 1.0 - fpr))


def photo_files(recipe: ScorerRecipe) -> tuple[list[Path], dict]:
    """The files a photo scorer fits and calibrates on (every folder less its validation files), for the card."""
    files, left_out = [], 0
    for folder in map(Path, recipe.data.split(os.pathsep)):
        listed = list_images(folder)
        files += fitting_files(listed)
        left_out += len(validation_files(listed))
    return files, {
        "data": recipe.data.split(os.pathsep),
        "images": len(files),
        "validation_left_out": left_out,
        "validation_rule": f"every {VALIDATION_EVERY}th file of each folder, by sorted name",
        "fingerprint_sha256": fingerprint(files),
    }


def validation_flagged(scorer, recipe: ScorerRecipe) -> dict:
    """Share of the left-out files flagged, whole, clean and in each kind of noise the scorer must pass."""
    from denoiser.noise import NoiseSpec, degrade, quantize8

    files = [path for folder in recipe.data.split(os.pathsep) for path in validation_files(list_images(folder))]
    photos = [read_image(path).pixels for path in files]
    rng = np.random.default_rng(recipe.seed)
    out = {"images": len(photos)}
    for name in ("clean", "gauss:25", "gauss:50", "sp:5"):
        kind, _, level = name.partition(":")
        views = [quantize8(p) if kind == "clean" else degrade(p, NoiseSpec(kind, float(level)), rng) for p in photos]
        out[name] = round(float(np.mean([scorer.score(view)[0].anomalous for view in views])), 4)
    return out


PHOTO_SCORE = (
    "max of the components, each divided by its (1 - fpr) quantile on held-out training photos, the statistics of an "
    "image darker than `brightening.below` on average measured also with its values raised to `brightening.power` "
    "and the ones nearer photos kept: global = mean Mahalanobis distance of the image's statistics to the nearest "
    "normal training images; range = the most "
    "outlying continuous statistic, in half-widths of its 1-99% range; local = mean of the largest patch "
    "Mahalanobis distances"
)
DAMAGE_SCORE = (
    "; damage = the largest mean over 8 x 8 pixels of the damage network's per-pixel probability of a scratch, "
    "stain or pasted patch, on a copy with a short side of 256 pixels"
)
DAMAGE_LIMITS = (
    "the damage network learned synthetic damage (thin lines, tinted blobs, pasted regions of other photos): "
    "damage unlike these, or smaller than a few pixels of a 256-pixel copy, may pass"
)
NO_DAMAGE_LIMITS = "local damage on a photo (a scratch, a stain, a pasted patch) barely raises the score"


def train_photo_scorer(recipe: ScorerRecipe, command: str) -> Path:
    """Fit, calibrate and export a photo scorer; its card is written inside the `.keras` and beside it."""
    from denoiser.anomaly_features import GLOBAL_NAMES

    files, data = photo_files(recipe)
    started = time.time()
    scorer, counts = fit_photo_scorer(files, recipe)
    seconds = round(time.time() - started, 1)
    card = {
        "format": "denoise-card/1",
        "name": Path(recipe.out).stem,
        "task": "score",
        "architecture": {
            "preset": "photo",
            "global_statistics": list(GLOBAL_NAMES),
            "local_statistics": list(LOCAL_NAMES),
            "parameters": int(scorer.model.count_params()),
        },
        "score": PHOTO_SCORE + (DAMAGE_SCORE if scorer.damage is not None else ""),
        **scorer.card,
        "training": data
        | counts
        | {
            "recipe": {k: v for k, v in recipe._asdict().items() if k not in UNRECORDED},
            "seconds": seconds,
        }
        | reuse_history(recipe, command, seconds),
        "metrics": {"validation_flagged": validation_flagged(scorer, recipe)},
        "intended_use": "flag inputs of a photo denoiser that are not natural photos (documents, charts, UI, "
        "noise fields, flat or black frames, patterns, product shots)",
        "limits": (DAMAGE_LIMITS if scorer.damage is not None else NO_DAMAGE_LIMITS)
        + "; noise fields that are slightly smoothed or over a faint picture can pass; calibrated on BSD photos, "
        "so photos unlike them score higher (see docs/anomaly.md)",
        "command": command,
        "versions": {"denoise": __version__, "keras": keras.__version__, "backend": keras.backend.backend()},
    }
    path = save_artifact(scorer.model, card, recipe.out)
    write_banks(path, {"global": scorer.bank})
    return path
