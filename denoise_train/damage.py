"""The photo scorer's damage network: a small fully convolutional net that marks scratches, stains and pasted
patches, trained on synthetic damage painted onto training photos (as DRAEM and CutPaste do)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import cv2
import keras
import numpy as np
from PIL import Image, ImageDraw

from denoise_train.data import random_condition
from denoise_train.feeding import Batches
from denoiser.anomaly_features import damage_canvas, damage_scale
from denoiser.artifact import rebuild
from denoiser.engine import dtype_policy
from denoiser.imageio import read_image

KINDS = ("scratch", "stain", "patch")
WIDTH = 16  # a fresh damage network's channels at full size (twice, three and four times that below)


class DamageTraining(NamedTuple):
    """How the damage network trains: batches, seed, loss weight of damaged pixels, precision, batch painters, and
    the width of a fresh network."""

    steps: int
    seed: int = 0
    positive_weight: float = 1.0
    precision: str = "float32"  # resolved: float32 or bfloat16
    workers: int = 1
    processes: bool = False
    width: int = WIDTH  # of a fresh network; a continued one keeps its own

    def card(self) -> dict:
        """What the card records beyond the counts (how batches were painted does not change the network)."""
        return {"positive_weight": self.positive_weight, "precision": self.precision}


def scratch(shape: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Opacity and colour of one or two thin lines that wander across the image (mostly near white or black)."""
    height, width = shape
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 3))):
        point = (rng.uniform(0, width), rng.uniform(0, height))
        angle, points = rng.uniform(0, 2 * np.pi), [point]
        for _ in range(int(rng.integers(2, 8))):
            angle += rng.normal(0, 0.3)
            step = rng.uniform(0.05, 0.25) * max(width, height)
            points.append((points[-1][0] + step * np.cos(angle), points[-1][1] + step * np.sin(angle)))
        draw.line(points, fill=255, width=int(rng.integers(1, 5)))
    if rng.random() < 0.8:
        colour = np.full(3, rng.uniform(0.8, 1.0) if rng.random() < 0.6 else rng.uniform(0.0, 0.2))
    else:
        colour = rng.uniform(0, 1, 3)
    alpha = np.asarray(mask, np.float32) / 255
    if rng.random() < 0.3:
        alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.5, 1.2))
    return alpha * rng.uniform(0.5, 1.0), colour


def stain(shape: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Opacity and colour of a soft irregular blob (a tint from brown and yellow to any hue)."""
    height, width = shape
    mask = Image.new("L", (width, height), 0)
    radius = rng.uniform(0.05, 0.35) * min(height, width)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    corners = [
        (cx + radius * rng.uniform(0.5, 1.4) * np.cos(t), cy + radius * rng.uniform(0.5, 1.4) * np.sin(t))
        for t in np.linspace(0, 2 * np.pi, int(rng.integers(6, 16)), endpoint=False)
    ]
    ImageDraw.Draw(mask).polygon(corners, fill=255)
    soft = cv2.GaussianBlur(np.asarray(mask, np.float32) / 255, (0, 0), radius * rng.uniform(0.05, 0.3))
    if rng.random() < 0.6:
        colour = np.array([rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.35)])
    else:
        colour = rng.uniform(0, 1, 3)
    return soft * rng.uniform(0.3, 0.85), colour


def patch(rgb: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The image with a region of another photo pasted in (a rectangle, sometimes an ellipse), and its mask."""
    height, width = rgb.shape[:2]
    h, w = (max(4, int(rng.uniform(0.1, 0.5) * s)) for s in (height, width))
    y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
    dh, dw = donor.shape[:2]
    side = rng.uniform(0.1, 1.0)
    sh, sw = max(2, int(dh * side)), max(2, int(dw * side))
    sy, sx = int(rng.integers(dh - sh + 1)), int(rng.integers(dw - sw + 1))
    source = donor[sy : sy + sh, sx : sx + sw]
    method = cv2.INTER_AREA if sh > h else (cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC)
    source = np.clip(cv2.resize(source, (w, h), interpolation=method).reshape(h, w, -1), 0, 1)
    region = np.zeros((h, w), np.float32)
    if rng.random() < 0.75:
        region[:] = 1.0
    else:
        cv2.ellipse(region, (w // 2, h // 2), (w // 2, h // 2), 0, 0, 360, 1.0, -1)
    mask = np.zeros((height, width), np.float32)
    mask[y : y + h, x : x + w] = region
    alpha = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 2.0)) if rng.random() < 0.2 else mask
    pasted = rgb.copy()
    pasted[y : y + h, x : x + w] = source
    return rgb * (1 - alpha[..., None]) + pasted * alpha[..., None], mask


def damaged(
    rgb: np.ndarray, donor: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...] = KINDS
) -> tuple[np.ndarray, np.ndarray]:
    """The RGB image with one damage of a kind drawn from `kinds`, and where it is (H x W)."""
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "patch":
        return patch(rgb, donor, rng)
    alpha, colour = (scratch if kind == "scratch" else stain)(rgb.shape[:2], rng)
    return rgb * (1 - alpha[..., None]) + colour * alpha[..., None], (alpha > 0.1 * max(alpha.max(), 1e-6))


def condition(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clean (60%), with Gaussian noise of sigma 0-50 (30%), or with 0.5-10% static."""
    return random_condition(image, rng, clean=0.6, noisy=0.3, sigma=50, static=10)


def sample(photo: np.ndarray, donor: np.ndarray, size: int, rng: np.random.Generator, share: float):
    """One training window: a random view of the photo, conditioned and brought to the damage canvas as the
    scorer does, cut to `size`; with probability `share`, the part of the view under the window is damaged
    first. Returns the window and its mask."""
    height, width = photo.shape[:2]
    h, w = (max(min(96, s), int(s * rng.uniform(0.35, 1.0))) for s in (height, width))
    y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
    view = np.repeat(photo[y : y + h, x : x + w], 3 // photo.shape[-1], axis=-1)
    scale = damage_scale(h, w)
    ch, cw = int(round(h * scale)), int(round(w * scale))
    top, left = int(rng.integers(max(1, ch - size + 1))), int(rng.integers(max(1, cw - size + 1)))
    mask = np.zeros((h, w), np.float32)
    if rng.random() < share:
        y0, x0 = int(top / scale), int(left / scale)
        y1, x1 = min(h, int(np.ceil((top + size) / scale))), min(w, int(np.ceil((left + size) / scale)))
        part, mask[y0:y1, x0:x1] = damaged(view[y0:y1, x0:x1], np.repeat(donor, 3 // donor.shape[-1], axis=-1), rng)
        view = view.copy()
        view[y0:y1, x0:x1] = part
    if photo.shape[-1] == 1:
        view = view.mean(axis=-1, keepdims=True)
    canvas, (ch, cw) = damage_canvas(condition(view, rng))
    mask = cv2.resize(mask, (cw, ch), interpolation=cv2.INTER_LINEAR) > 0.25
    target = np.zeros((size, size), np.float32)
    cut = mask[top : top + size, left : left + size]
    target[: cut.shape[0], : cut.shape[1]] = cut
    return canvas[top : top + size, left : left + size], target


def windows(photos: list[np.ndarray], count: int, size: int, rng: np.random.Generator, share: float = 0.5):
    """`count` training windows and their masks (N x size x size x 3 float16, N x size x size x 1 uint8)."""
    x = np.zeros((count, size, size, 3), np.float16)
    y = np.zeros((count, size, size, 1), np.uint8)
    for i in range(count):
        a, b = rng.choice(len(photos), 2, replace=False)
        x[i], y[i, ..., 0] = sample(photos[a], photos[b], size, rng, share)
    return x, y


class Windows(NamedTuple):
    """Batches of training windows and their masks, painted afresh for each (epoch, index) of a random stream (a
    maker for `feeding.Batches`)."""

    photos: list[np.ndarray]
    batch_size: int
    size: int
    stream: tuple

    def batch(self, epoch: int, index: int):
        """Batch `index` of `epoch`, painted from both and the stream."""
        rng = np.random.default_rng((*self.stream, epoch, index))
        x, y = windows(self.photos, self.batch_size, self.size, rng)
        return x.astype(np.float32), y.astype(np.float32)


def conv(filters: int, dilation: int = 1, strides: int = 1, name: str = ""):
    """3 x 3 convolution, batch normalisation, ReLU."""
    layers = [
        keras.layers.Conv2D(filters, 3, strides=strides, dilation_rate=dilation, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
    ]
    return keras.Sequential(layers, name=name)


def damage_network(width: int = WIDTH) -> keras.Model:
    """A small U-Net to 1/8 scale with dilated context at the bottom; outputs damage logits at full size."""
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="centre")(image)
    full = conv(width, name="full")(x)
    half = conv(2 * width, name="half_b")(conv(2 * width, strides=2, name="half_a")(full))
    quarter = conv(3 * width, name="quarter_b")(conv(3 * width, strides=2, name="quarter_a")(half))
    eighth = conv(4 * width, strides=2, name="eighth")(quarter)
    for dilation in (1, 2, 4):
        eighth = conv(4 * width, dilation, name=f"context_{dilation}")(eighth)
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name="up_quarter")(eighth)
    up = conv(3 * width, name="merge_quarter")(keras.layers.Concatenate()([up, quarter]))
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name="up_half")(up)
    up = conv(2 * width, name="merge_half")(keras.layers.Concatenate()([up, half]))
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name="up_full")(up)
    up = conv(width, name="merge_full")(keras.layers.Concatenate()([up, full]))
    logits = keras.layers.Conv2D(1, 1, name="logits")(up)
    return keras.Model(image, logits, name="damage")


def weighted_cross_entropy(positive_weight: float):
    """Per-pixel binary cross-entropy of logits (in float32), damaged pixels counting `positive_weight` times."""

    def loss(mask, logits):
        entropy = keras.ops.binary_crossentropy(mask, keras.ops.cast(logits, "float32"), from_logits=True)
        return keras.ops.mean(entropy * (1.0 + (positive_weight - 1.0) * mask))

    return loss


def train_damage(
    files: list[Path],
    plan: DamageTraining,
    start: keras.Model | None = None,
    batch: int = 16,
    size: int = 128,
    epoch_windows: int = 4000,
) -> tuple[keras.Model, dict]:
    """Train the damage network as `plan` says (from `start`'s weights at a third of the rate, when given), on
    fresh windows of `files`; returns it in float32 and what the card records of its training."""
    keras.utils.set_random_seed(plan.seed)
    photos = [np.asarray(read_image(path).pixels, np.float32) for path in files]
    per_epoch = min(epoch_windows, plan.steps * batch) // batch
    epochs = -(-plan.steps // per_epoch)
    model = rebuild(damage_network(plan.width) if start is None else start, dtype_policy(plan.precision))
    rate = 3e-3 if start is None else 1e-3
    schedule = keras.optimizers.schedules.CosineDecay(rate, epochs * per_epoch, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), weighted_cross_entropy(plan.positive_weight))
    stream = (plan.seed, 0 if start is None else 1)  # further training: windows not seen
    started, losses = time.time(), []

    def report(epoch: int, logs: dict) -> None:
        losses.append(round(float(logs["loss"]), 4))
        print(
            f"damage network, epoch {epoch + 1}/{epochs}: loss {losses[-1]} ({time.time() - started:.0f} s)", flush=True
        )

    with Batches(Windows(photos, batch, size, stream), per_epoch, plan.workers, plan.processes) as data:
        paced = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, _: setattr(data, "epoch", epoch), on_epoch_end=report
        )
        model.fit(data, epochs=epochs, callbacks=[paced], verbose=0)
    trained = rebuild(model, "float32")  # uncompiled: the scorer's file carries no reference to the loss
    counts = {"steps": plan.steps, "batch": batch, "windows": epochs * per_epoch * batch, "window": size, "rate": rate}
    counts |= {"width": plan.width} if start is None else {}
    return trained, counts | plan.card() | {"losses": losses}
