"""Train a denoiser, validate it and export it with its card."""

from __future__ import annotations

import ctypes
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from denoise_train.data import NoiseSettings, Patches, fingerprint, list_images, load_image, split
from denoise_train.feeding import Batches
from denoise_train.presets import PRESETS, matte_output, size_multiple
from denoiser import __version__
from denoiser.artifact import (
    Artifact,
    card_history,
    load_artifact,
    measure_receptive_radius,
    round_to_half,
    save_artifact,
    with_precision,
)
from denoiser.engine import Engine, Settings, cpu_bf16_is_faster, dtype_policy, measure_seam_radius, resolve_device
from denoiser.int8 import read_int8
from denoiser.noise import degrade, parse_noise, psnr

VALIDATION_NOISE = "gauss:15,gauss:25,gauss:50,sp:10,wm:40"
SEAM_NOISE = {"denoise": "gauss:25", "static": "sp:10", "watermark": "wm:40"}
VALIDATION_SETTINGS = Settings(tile=256, batch_size=4)  # how validation cuts images, float32 or int8 alike


class Recipe(NamedTuple):
    """Everything that decides a training run."""

    data: str
    out: str
    preset: str = "unet"
    channels: int = 1
    depth: int = 10
    width: int = 32
    levels: int = 4
    bottom: int = 2
    decoder: int = 1
    top_width: int = 24
    epochs: int = 10
    minutes: float | None = None
    steps: int = 200
    batch_size: int = 32
    patch: int = 64
    lr: float = 1e-3
    ema: float = 0.0
    sigma_max: float = 50.0
    sp_prob: float = 0.2
    sp_max: float = 15.0
    wm_prob: float = 0.0
    logo_share: float = 0.0
    matte_weight: float = 0.1
    task: str = "denoise"
    init: str | None = None
    first: str | None = None
    precision: str = "auto"
    checkpoint_dir: str | None = None
    seed: int = 0
    workers: int = 1
    processes: bool = False

    @property
    def folders(self) -> list[str]:
        """The training folders (`data` holds them joined with os.pathsep)."""
        return self.data.split(os.pathsep)

    @property
    def noise(self) -> NoiseSettings:
        """The degradations to train on: the mixture for `denoise`, one kind only for `static` or `watermark`."""
        if self.task == "static":
            return NoiseSettings(self.sigma_max, 1.0, self.sp_max, 0.0)
        if self.task == "watermark":
            return NoiseSettings(self.sigma_max, 0.0, self.sp_max, 1.0, self.logo_share)
        return NoiseSettings(self.sigma_max, self.sp_prob, self.sp_max, self.wm_prob, self.logo_share)


def preset_params(recipe: Recipe) -> dict:
    """The recipe's settings that the preset's builder takes."""
    scales = {"width": recipe.width, "levels": recipe.levels, "bottom": recipe.bottom, "decoder": recipe.decoder}
    return {
        "residual": {"depth": recipe.depth, "width": recipe.width},
        "unet": scales,
        "unet-half": scales,
        "unet-lite": scales | {"top": recipe.top_width},
        "matte": scales,
    }.get(recipe.preset, {})


class RecipeError(ValueError):
    """A recipe that cannot run as given: its data, preset or parent models do not fit it."""


def build(recipe: Recipe, first: keras.Model | None = None) -> keras.Model:
    """The preset's network; with `first`, a matte net's second stage on that frozen first stage."""
    if first is not None and recipe.preset != "matte":
        raise RecipeError(f"only a matte net takes a first stage, not {recipe.preset}")
    stages = {} if first is None else {"first": first}
    return PRESETS[recipe.preset](recipe.channels, **preset_params(recipe), **stages)


TIMED_EPOCHS = 1_000_000  # the bound on a run with a time budget
LR_FLOOR = 0.02  # the cosine decays the learning rate to this share of its peak


class TimedCosine(keras.callbacks.Callback):
    """Cosine decay over a time budget instead of a step count: each epoch starts at the rate for the share of
    the budget spent, and training stops after the epoch that leaves too little time for another."""

    def __init__(self, lr: float, seconds: float, clock=time.monotonic):
        super().__init__()
        self.lr, self.seconds, self.clock = lr, seconds, clock

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_began = self.clock()
        spent = min((self.epoch_began - self.started) / self.seconds, 1.0)
        self.model.optimizer.learning_rate = self.lr * (LR_FLOOR + (1 - LR_FLOOR) * (1 + math.cos(math.pi * spent)) / 2)

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        if now + (now - self.epoch_began) > self.started + self.seconds:
            self.model.stop_training = True


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


class KeepFreedMemory(keras.callbacks.Callback):
    """Undo the 128 kB malloc trim threshold that TensorFlow sets when it first reads a Python data source: with
    it, glibc returns every freed activation to the kernel and faults it in again on the next step, which cost
    10% of the time per step (gray U-Net, bf16) to 40% (unet-half, float32, another run sharing the CPU)."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            try:
                libc = ctypes.CDLL("libc.so.6")
            except OSError:  # not glibc
                return
            libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest
            libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)


def fit(model: keras.Model, images: list[np.ndarray], recipe: Recipe) -> keras.callbacks.History:
    """Train noisy-to-clean with MSE, Adam (global gradient norm clipped to 1) and cosine decay, over the epochs
    or, with `minutes`, over that time. With `ema`, the model ends with that moving average of its weights.

    Patches draw their noise from the epoch number, so a run resumed from its checkpoint goes on with new draws.
    A timed run starts its clock again when resumed.

    A `matte` model also learns where the watermark is: its opacity map is a second output, supervised with
    binary cross-entropy weighted by `matte_weight` beside the MSE on pixels.
    """
    timed = recipe.minutes is not None
    schedule = (
        recipe.lr
        if timed
        else keras.optimizers.schedules.CosineDecay(recipe.lr, recipe.epochs * recipe.steps, alpha=LR_FLOOR)
    )
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=1.0, use_ema=recipe.ema > 0, ema_momentum=recipe.ema)
    mattes = recipe.preset == "matte"
    if mattes:
        model = keras.Model(model.inputs, {"clean": model.outputs[0], "matte": matte_output(model)})
        model.compile(
            optimizer=optimizer,
            loss={"clean": "mse", "matte": "binary_crossentropy"},
            loss_weights={"clean": 1.0, "matte": recipe.matte_weight},
        )
    else:
        model.compile(optimizer=optimizer, loss="mse")
    maker = Patches(images, recipe.noise, recipe.patch, recipe.batch_size, recipe.seed, mattes=mattes)
    with Batches(maker, recipe.steps, recipe.workers, recipe.processes) as data:
        callbacks = [
            keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, _: setattr(data, "epoch", epoch)),
            KeepFreedMemory(),
        ]
        callbacks += [keras.callbacks.BackupAndRestore(recipe.checkpoint_dir)] if recipe.checkpoint_dir else []
        callbacks += [TimedCosine(recipe.lr, recipe.minutes * 60)] if timed else []
        return model.fit(data, epochs=TIMED_EPOCHS if timed else recipe.epochs, callbacks=callbacks, verbose=2)


def transfer_weights(source: keras.Model, target: keras.Model) -> int:
    """Copy the weights of every layer that both models have by name and shape; how many layers were copied."""
    copied = 0
    for layer in target.layers:
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            continue
        if weights and [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(weights)
            copied += 1
    return copied


def validate(engine: Engine, images: list[np.ndarray], noise: str, seed: int) -> dict:
    """Mean PSNR of the noisy inputs and of the model's outputs, per degradation."""
    metrics = {}
    for spec in parse_noise(noise):
        rng = np.random.default_rng(seed)
        noisy = [degrade(image, spec, rng) for image in images]
        restored = list(engine.denoise_many(noisy))
        metrics[str(spec)] = {
            "noisy_psnr": round(float(np.mean([psnr(c, n) for c, n in zip(images, noisy)])), 3),
            "psnr": round(float(np.mean([psnr(c, r) for c, r in zip(images, restored)])), 3),
        }
    return metrics


def seam_radius(artifact: Artifact, images: list[np.ndarray], seed: int) -> int:
    """The tile margin the engine needs for a model, measured on validation images with its task's noise."""
    spec = parse_noise(SEAM_NOISE[artifact.card["task"]])[0]
    rng = np.random.default_rng(seed)
    return measure_seam_radius(artifact, [degrade(image, spec, rng) for image in images])


def card_images(card: dict, which: str, folders: list[str] | None = None) -> list[np.ndarray]:
    """A saved model's training or validation images (`which` = "files" or "validation_files"), found by name in
    its card's data folders or in `folders`."""
    training = card["training"]
    folders = folders or (training["data"] if isinstance(training["data"], list) else [training["data"]])
    names = set(training[which])
    return [load_image(f, card["channels"]) for folder in folders for f in list_images(folder) if f.name in names]


def remeasure_seams(path: str | Path) -> tuple[int, int]:
    """Measure a saved model's receptive radius, then its seam radius on its card's validation images, and write
    both into the card."""
    artifact = load_artifact(path)
    card = artifact.card | {"receptive_radius": measure_receptive_radius(artifact.model, artifact.align)}
    images = card_images(card, "validation_files")
    card["seam_radius"] = seam_radius(Artifact(artifact.model, card), images, card["training"]["recipe"]["seed"])
    save_artifact(artifact.model, card, path, read_int8(path), same_model=True)
    return card["receptive_radius"], card["seam_radius"]


def describe(model: keras.Model, recipe: Recipe) -> dict:
    """The architecture as recorded in the card."""
    return {
        "preset": recipe.preset,
        "params": preset_params(recipe),
        "parameters": int(model.count_params()),
        "layers": [f"{layer.__class__.__name__}:{layer.name}" for layer in model.layers],
    }


def training_precision(choice: str) -> str:
    """`auto` as bfloat16 on a GPU, or on a CPU where a bf16 convolution is faster, else float32; others as given."""
    if choice != "auto":
        return choice
    return "bfloat16" if resolve_device("auto") == "gpu" or cpu_bf16_is_faster() else "float32"


def train_and_export(recipe: Recipe, command: str) -> Path:
    """Run the whole recipe and write the `.keras` model and its card."""
    keras.utils.set_random_seed(recipe.seed)
    files = [path for folder in recipe.folders for path in list_images(folder)]
    train_files, val_files = split(files)
    train_images = [load_image(f, recipe.channels) for f in train_files]
    train_images = [im for im in train_images if min(im.shape[:2]) >= recipe.patch]
    if not train_images:
        raise RecipeError(
            f"no training image in {', '.join(recipe.folders)} is at least --patch {recipe.patch} px on its short side"
        )
    val_images = [load_image(f, recipe.channels) for f in val_files]
    device = resolve_device("auto")
    precision = training_precision(recipe.precision)
    policy = dtype_policy(precision)

    first = load_artifact(recipe.first) if recipe.first else None
    model = build(recipe, first.model if first else None)
    parent = load_artifact(recipe.init) if recipe.init else None
    copied = transfer_weights(parent.model, model) if parent else 0
    if parent and not copied:
        raise RecipeError(f"{recipe.init} shares no layers with a {recipe.preset} model")
    model = with_precision(model, policy)
    started = time.time()
    history = fit(model, train_images, recipe)
    seconds = time.time() - started
    model = with_precision(model, "float32")
    round_to_half(model)

    align = size_multiple(recipe.preset, recipe.levels)
    card = {
        "format": "denoise-card/1",
        "name": Path(recipe.out).stem,
        "task": recipe.task,
        "channels": recipe.channels,
        "size_multiple": align,
        "receptive_radius": measure_receptive_radius(model, align),
    }
    card |= {
        "seam_radius": seam_radius(Artifact(model, card), val_images, recipe.seed),
        "architecture": describe(model, recipe),
    }
    engine = Engine(Artifact(model, card), VALIDATION_SETTINGS)
    card |= {
        "noise": recipe.noise._asdict() | {"quantized": "8-bit, rounded and clipped"},
        "training": {
            "data": recipe.folders,
            "folder_images": {folder: len(list_images(folder)) for folder in recipe.folders},
            "files": [f.name for f in train_files],
            "validation_files": [f.name for f in val_files],
            "fingerprint_sha256": fingerprint(files),
            "recipe": {k: v for k, v in recipe._asdict().items() if k not in ("data", "out", "workers", "processes")},
            "precision": precision,
            "device": device,
            "seconds": round(seconds, 1),
            "epochs_run": len(history.history["loss"]),
            "final_loss": float(history.history["loss"][-1]),
            "init_layers": f"{copied} of {sum(bool(layer.weights) for layer in model.layers)}" if parent else None,
            "history": (card_history(parent.card) if parent else [])
            + [
                {
                    "command": command,
                    "seconds": round(seconds, 1),
                    "epochs": len(history.history["loss"]),
                    "loss": float(history.history["loss"][-1]),
                }
            ],
            "first_history": card_history(first.card) if first else None,
        },
        "command": command,
        "metrics": {"validation": validate(engine, val_images, VALIDATION_NOISE, recipe.seed)},
        "versions": {"denoise": __version__, "keras": keras.__version__, "backend": keras.backend.backend()},
    }
    return save_artifact(model, card, recipe.out)
