"""Anomaly scorer: an undercomplete autoencoder plus banks of normal views, calibrated inside its artifact.

An image is resized to the scorer's input size. Its components are the autoencoder's reconstruction
error (`recon`), how badly its rotation head tells the image's four quarter turns apart (`rotation`,
when the model has that head), and, for each view the model outputs besides the reconstruction (`latent`, the code;
`pixels`, the image shrunk to about 9 x 9; `edges`, oriented-gradient histograms), the mean distance to the
nearest views of normal training images. Each component is standardised with its mean and spread on
held-out normal images, the weighted sum is the raw score, and the calibration maps the raw score so
that 0.5 is the threshold (see `denoiser.scoring`).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from denoiser.artifact import load_keras, read_card, resolve_model
from denoiser.scoring import Calibration, Score, normalise
from denoiser.storage import fitted_name

BANK_ENTRY = "denoise-banks.npz"
WHITENING = "_map"  # suffix of the photo scorer's Dense layers that map statistics
DAMAGE = "damage"  # the photo scorer's damage network, a sub-model of its model
DAMAGE_POOL = 8  # damage probabilities are averaged over squares of this side before the largest is taken


class Standardiser(NamedTuple):
    """Per-component mean and spread on held-out normal images, and each component's weight."""

    mean: dict
    std: dict
    weight: dict

    def combine(self, components: dict) -> np.ndarray:
        """Weighted sum of standardised components."""
        return sum(self.weight[k] * (components[k] - self.mean[k]) / self.std[k] for k in self.weight)

    @classmethod
    def fit(cls, components: dict, weight: dict) -> Standardiser:
        """Fit to the components of held-out normal images."""
        return cls(
            {k: float(np.mean(components[k])) for k in weight},
            {k: float(np.std(components[k]) or 1.0) for k in weight},
            dict(weight),
        )


class Scorer:
    """A loaded scorer: its model (image -> dict of views), banks of normal views, standardiser, calibration."""

    def __init__(self, model, banks: dict, card: dict):
        self.model, self.card = model, card
        self.banks = {name: np.asarray(bank, np.float32) for name, bank in banks.items()}
        self.size, self.channels = int(model.input_shape[1]), int(model.input_shape[-1])
        self.turns = isinstance(model.output, dict) and "rotation" in model.output
        self.neighbours = int(card.get("neighbours", 10))
        spec = card.get("standardiser")
        self.standardiser = Standardiser(**spec) if spec else None
        self.calibration = Calibration.from_card(card)
        self.pixel_threshold = float(card.get("pixel_threshold", 0.0)) or None

    @classmethod
    def load(cls, spec: str | Path) -> Scorer:
        """Load from a `.keras` path or a shipped name (`scorer`); raises FileNotFoundError (ModelRefused for a file
        that is not safe to load, see `denoiser.artifact.check_model`)."""
        from denoiser import layers  # noqa: F401  registers custom layers such as TiedDense

        path = resolve_model(spec)
        model = load_keras(path)
        card = read_card(path)
        kind = PhotoScorer if card.get("kind") == PhotoScorer.KIND else cls
        return kind(model, read_banks(path), card)

    @property
    def name(self) -> str:
        return str(self.card.get("name", "scorer"))

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """An image resized and converted to this scorer's input."""
        return prepare(pixels, self.size, self.channels)

    def views(self, batch: np.ndarray) -> dict:
        """The model's outputs for a prepared batch (N x size x size x C), as float32 arrays."""
        return {name: np.asarray(value, np.float32) for name, value in self.model.predict_on_batch(batch).items()}

    def measure(self, batch: np.ndarray) -> tuple[dict, np.ndarray]:
        """Components per image and per-pixel squared errors for a prepared batch."""
        count = len(batch)
        if self.turns:  # one call for the batch and its three other quarter turns
            batch = np.concatenate([np.rot90(batch, turns, axes=(1, 2)) for turns in range(4)])
        views = self.views(batch)
        batch, rotation = batch[:count], views.pop("rotation", None)
        views = {name: view[:count] for name, view in views.items()}
        errors = (views.pop("reconstruction").reshape(batch.shape) - batch) ** 2
        components = {"recon": errors.mean(axis=(1, 2, 3))}
        for name, bank in self.banks.items():
            components[name] = nearest_distance(views[name].reshape(count, -1), bank, self.neighbours)
        if rotation is not None:
            components["rotation"] = turn_surprise(rotation)
        return components, errors.mean(axis=-1)

    def raw(self, components: dict) -> np.ndarray:
        """Raw scores from components: their standardised weighted sum (reconstruction error if uncalibrated)."""
        return self.standardiser.combine(components) if self.standardiser else components["recon"]

    def score(self, pixels: np.ndarray, heatmap: bool = False) -> tuple[Score, np.ndarray | None]:
        """One image's score and, if asked, its anomaly map (H x W in [0, 1], 0.5 at the pixel threshold)."""
        components, errors = self.measure(self.prepare(pixels)[None])
        raw = float(self.raw(components)[0])
        if self.calibration is None:
            result = Score(raw, float("nan"), False)
        else:
            result = Score(raw, normalise(raw, self.calibration), raw >= self.calibration.threshold)
        return result, self.anomaly_map(errors[0], pixels.shape[:2]) if heatmap else None

    def anomaly_map(self, errors: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Per-pixel errors scaled so that the calibrated pixel threshold is 0.5, resized to `shape`."""
        scale = 0.5 / self.pixel_threshold if self.pixel_threshold else 1.0 / max(float(errors.max()), 1e-12)
        heat = np.clip(errors * scale, 0.0, 1.0).astype(np.float32)
        return cv2.resize(heat, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


class PhotoScorer:
    """Scores whether an input is a natural photo and whether a part of it is damaged.

    Models of normal photos (clean and noisy), each stored as a Dense layer of the `.keras` model that whitens
    statistics (see `denoiser.anomaly_features`). Components: `global`, the mean Mahalanobis distance of the
    image's global statistics to the `neighbours` nearest normal training images; `range`, how far the most
    outlying single statistic lies from its median, in half-widths of its 1-99% range on training photos (one
    statistic far out, as the coarse contrast of a noise field, is diluted in the distance); `local`, the mean of
    the `top` largest Mahalanobis distances of patch statistics, which also compare a patch to its neighbourhood;
    and, when the model holds a damage network (a sub-model named DAMAGE), `damage` (see `damage_level`). A dark
    image is also measured brightened (`Brightening`), and the statistics nearer normal photos are kept.
    Each is divided by its (1 - fpr) quantile on held-out normal photos, and the raw score is the largest.
    """

    KIND = "photo"

    def __init__(self, model, banks: dict, card: dict):
        self.model, self.card = model, card
        self.whitening = {
            layer.name.removesuffix(WHITENING): [np.asarray(w, np.float64) for w in layer.get_weights()]
            for layer in model.layers
            if layer.name.endswith(WHITENING)
        }
        self.damage = next((layer for layer in model.layers if layer.name == DAMAGE), None)
        self.bank = np.asarray(banks.get("global", np.zeros((0, 0))), np.float64)
        self.neighbours, self.top = int(card.get("neighbours", 5)), int(card.get("top", 3))
        self.brightening = Brightening(**card["brightening"]) if "brightening" in card else None
        self.scales = dict(card.get("scales", {"global": 1.0, "range": 1.0, "local": 1.0}))
        self.calibration = Calibration.from_card(card)
        self.pixel_threshold = float(card.get("pixel_threshold", 0.0)) or None
        self.damage_threshold = float(card.get("damage_pixel_threshold", 0.0)) or None

    @property
    def name(self) -> str:
        return str(self.card.get("name", "scorer"))

    def whiten(self, name: str, features: np.ndarray) -> np.ndarray:
        """Features mapped by the model's whitening layer `name` (rows: samples)."""
        kernel, bias = self.whitening[name]
        return np.asarray(features, np.float64) @ kernel + bias

    def components(self, pixels: np.ndarray) -> tuple[dict, Maps]:
        """The image's components (global, range, local, and damage with a damage network) and its maps."""
        from denoiser.anomaly_features import colour_planes, local_features, toned, working_copy

        pixels = colour_planes(pixels)
        work = working_copy(pixels)  # shared by both kinds of statistics
        statistics, power = self.global_statistics(pixels, work)
        found, patches = self.levels(statistics, local_features(pixels, toned(work, power)))
        damage = None if self.damage is None else self.damage_map(pixels)
        if damage is not None:
            found["damage"] = damage_level(damage)
        return found, Maps(patches, damage)

    def global_statistics(self, pixels: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, float]:
        """The image's global statistics (1 x n) and the tone power they were measured under: a dark image's values
        are also raised to the brightening power, and the measurement nearer photos is kept."""
        from denoiser.anomaly_features import GLOBAL_NAMES, global_features

        statistics = global_features(pixels, work)[None]
        if self.brightening is None or statistics[0, GLOBAL_NAMES.index("mean")] >= self.brightening.below:
            return statistics, 1.0
        brighter = global_features(pixels, work, self.brightening.power)[None]
        if self.global_distance(brighter) < self.global_distance(statistics):
            return brighter, self.brightening.power
        return statistics, 1.0

    def levels(self, statistics: np.ndarray, local: np.ndarray) -> tuple[dict, np.ndarray]:
        """The global, range and local components of an image's statistics (global 1 x n, local rows x cols x n),
        and the distance of each patch (rows x cols)."""
        patches = np.sqrt((self.whiten("local", local.reshape(-1, local.shape[-1])) ** 2).sum(axis=1))
        found = {
            "global": self.global_distance(statistics),
            "range": float(np.abs(self.whiten("range", statistics)).max()),
            "local": float(np.sort(patches)[-min(self.top, len(patches)) :].mean()),
        }
        return found, patches.reshape(local.shape[:2])

    def global_distance(self, statistics: np.ndarray) -> float:
        """Mean distance of global statistics (1 x n), whitened, to the nearest normal views (norm without a bank)."""
        white = self.whiten("global", statistics)
        if len(self.bank):
            return float(nearest_distance(white, self.bank, self.neighbours)[0])
        return float(np.sqrt((white**2).sum()))

    def damage_map(self, pixels: np.ndarray) -> np.ndarray:
        """The damage network's probability per pixel of the image's damage canvas (its unpadded part)."""
        from denoiser.anomaly_features import damage_canvas

        canvas, (height, width) = damage_canvas(pixels)
        logits = np.asarray(self.damage.predict_on_batch(canvas[None]), np.float32)[0, :height, :width, 0]
        return 1.0 / (1.0 + np.exp(-logits))

    def raw(self, components: dict) -> float:
        """The larger of the components, each divided by its quantile on held-out normal photos."""
        return max(components[k] / self.scales[k] for k in self.scales)

    def score(self, pixels: np.ndarray, heatmap: bool = False) -> tuple[Score, np.ndarray | None]:
        """One image's score and, if asked, its anomaly map (H x W in [0, 1], 0.5 at the pixel threshold)."""
        components, maps = self.components(pixels)
        raw = self.raw(components)
        if self.calibration is None:
            result = Score(raw, float("nan"), False)
        else:
            result = Score(raw, normalise(raw, self.calibration), raw >= self.calibration.threshold)
        return result, self.anomaly_map(maps, pixels.shape[:2]) if heatmap else None

    def anomaly_map(self, maps: Maps, shape: tuple[int, int]) -> np.ndarray:
        """The damage map, or without a damage network the patch distances, scaled so that the pixel threshold is
        0.5, at `shape`."""
        if maps.damage is not None:
            heat = maps.damage * (0.5 / self.damage_threshold if self.damage_threshold else 1.0)
        else:
            heat = self.patch_heat(maps.patches, shape)
        return cv2.resize(np.clip(heat, 0.0, 1.0), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)

    def patch_heat(self, patches: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Patch distances spread over their windows of the working copy (the largest where they overlap), scaled
        so that the pixel threshold is 0.5."""
        from denoiser.anomaly_features import PATCH, STRIDE, working_size

        scale = 0.5 / self.pixel_threshold if self.pixel_threshold else 1.0 / max(float(patches.max()), 1e-12)
        heat = np.zeros(working_size(*shape)[0], np.float32)
        for (row, col), value in np.ndenumerate(patches):
            window = heat[row * STRIDE : row * STRIDE + PATCH, col * STRIDE : col * STRIDE + PATCH]
            np.maximum(window, value, out=window)
        return heat * scale


class Brightening(NamedTuple):
    """Images darker than `below` on average are also measured with their values raised to `power`."""

    below: float
    power: float


class Maps(NamedTuple):
    """A photo scorer's maps of an image: patch distances (rows x cols), and damage probabilities (H x W of the
    damage canvas) or None without a damage network."""

    patches: np.ndarray
    damage: np.ndarray | None


def damage_level(probabilities: np.ndarray) -> float:
    """An image's damage component: the largest mean probability over a DAMAGE_POOL square of the damage map."""
    return float(cv2.blur(probabilities, (DAMAGE_POOL, DAMAGE_POOL)).max())


def prepare(pixels: np.ndarray, size: int, channels: int) -> np.ndarray:
    """An image (H x W x C floats in [0, 1]; C = 1, 3 or 4 for CMYK) as `channels` at size x size.

    It is shrunk first, so that no full-size copy is made; CMYK is then converted per small pixel.
    """
    pixels = np.asarray(pixels, np.float32)
    small = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, pixels.shape[-1])
    if pixels.shape[-1] == 4:
        small = (1.0 - small[..., :3]) * (1.0 - small[..., 3:])
    if small.shape[-1] != channels:
        small = (
            np.repeat(small, 3, axis=-1) if channels == 3 else small @ np.array([[0.299], [0.587], [0.114]], np.float32)
        )
    return small


def nearest_distance(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance from each query to its `k` nearest rows of `bank`."""
    squared = (queries**2).sum(axis=1, keepdims=True) - 2.0 * queries @ bank.T + (bank**2).sum(axis=1)
    k = min(k, len(bank))
    return np.sqrt(np.maximum(np.partition(squared, k - 1, axis=1)[:, :k], 0.0)).mean(axis=1)


def turn_surprise(logits: np.ndarray) -> np.ndarray:
    """Mean negative log-likelihood of the true quarter turn, from logits of the 4 turns stacked (4N x 4)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    truth = np.repeat(np.arange(4), len(logits) // 4)
    return -log_p[np.arange(len(logits)), truth].reshape(4, -1).mean(axis=0)


def read_banks(path: str | Path) -> dict:
    """The banks of normal views stored inside a scorer's `.keras` archive ({} when it has none)."""
    with zipfile.ZipFile(path) as archive:
        if BANK_ENTRY not in archive.namelist():
            return {}
        with np.load(io.BytesIO(archive.read(BANK_ENTRY))) as banks:
            return dict(banks)


def write_banks(path: str | Path, banks: dict) -> None:
    """Store the banks of normal views inside a `.keras` archive, in float16 to halve their size."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(bank, np.float16) for name, bank in banks.items()})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(BANK_ENTRY, buffer.getvalue())


def heatmap_image(heat: np.ndarray) -> np.ndarray:
    """An anomaly map (H x W in [0, 1]) as 8-bit RGB in the inferno colour map."""
    bgr = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    return bgr[..., ::-1]


HEATMAP_SUFFIX = ".heatmap.png"


def heatmap_path(target: Path) -> Path:
    """Where the anomaly map for an output goes: beside it, as `<name>.heatmap.png`."""
    return target.with_name(fitted_name(target.name, HEATMAP_SUFFIX))
