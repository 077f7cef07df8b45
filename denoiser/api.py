"""The Python API: clean and score images held in memory, with the same models and engine as `denoise batch`.

import denoiser

clean = denoiser.denoise(noisy)          # a uint8, uint16 or float array, or a PIL image: the same kind back
result = denoiser.score(photo)           # Score(raw, score, anomalous): anomalous at score >= 0.5

model = denoiser.load("gray", tile=512)  # keep one to clean many images; settings as `denoise batch`'s options
picture = denoiser.read("scan.tif")      # float pixels in [0, 1], alpha and metadata
denoiser.write("clean.tif", model.denoise(picture.pixels), like=picture)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from denoiser.engine import Settings
from denoiser.imageio import Picture, read_image, write_image
from denoiser.quiet import quiet_tensorflow
from denoiser.scoring import Score
from denoiser.settings import check

quiet_tensorflow()  # a notebook meets no TensorFlow start-up notices either, unless TF_CPP_MIN_LOG_LEVEL is set

__all__ = ["Denoiser", "Picture", "Score", "Scorer", "denoise", "load", "read", "score", "write"]  # noqa: F822 - Scorer is lazy

read = read_image
write = write_image
SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
SIXTEEN_BIT = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}  # PIL's 16-bit gray modes, as dtypes


def __getattr__(name: str):
    if name == "Scorer":  # the anomaly scorer, loaded with Keras only when asked for
        from denoiser.anomaly import Scorer

        return Scorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Denoiser:
    """A denoiser ready for many images: `model` is a file or shipped name (gray, gray-fast, color,
    watermark-gray), or None for the shipped gray or colour model by each image's channels; `settings` are
    Settings' fields (tile, overlap, batch_size, device, precision, ensemble)."""

    def __init__(self, model: str | None = None, scorer: str | None = None, **settings):
        from denoiser.pipeline import Models

        unknown = sorted(set(settings) - set(Settings._fields))
        if unknown:
            raise TypeError(f"unknown settings {', '.join(unknown)}; they are {', '.join(Settings._fields)}")
        for name, value in settings.items():
            check(name, value)  # the command line's rules and words
        self.models = Models(Settings(**settings), model, scorer)

    def denoise(self, image):
        """The image cleaned: a numpy array (H x W or H x W x C; uint8, uint16 or float in [0, 1]) or a PIL
        image, returned as the same kind, dtype and shape; an alpha channel (the 2nd of 2, the 4th of 4 in
        arrays, or a PIL image's) is kept as it is."""
        return convert(image, self._pixels)

    def score(self, image) -> Score:
        """How anomalous the image is, as `denoise score` records it."""
        return self.models.scorer.score(pixels_of(image)[0])[0]

    def _pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Float H x W x C pixels in [0, 1], cleaned."""
        cleaned = self.models.for_channels(pixels.shape[-1]).denoise(pixels)
        return np.clip(cleaned, 0.0, 1.0)


def load(model: str | None = None, **settings) -> Denoiser:
    """A Denoiser for `model` (None: the shipped gray or colour model per image) with engine settings."""
    return Denoiser(model, **settings)


@lru_cache(maxsize=4)
def _cached(model: str | None, settings: tuple) -> Denoiser:
    return Denoiser(model, **dict(settings))


def denoise(image, model: str | None = None, **settings):
    """`image` cleaned, as the same kind (see Denoiser.denoise); the model stays loaded for the next call."""
    return _cached(model, tuple(sorted(settings.items()))).denoise(image)


def score(image, scorer: str | None = None) -> Score:
    """How anomalous `image` is with the shipped scorer or `scorer` (a file): Score(raw, score, anomalous)."""
    from denoiser.artifact import DEFAULT_SCORER

    return _scorer(scorer or DEFAULT_SCORER).score(pixels_of(image)[0])[0]


@lru_cache(maxsize=2)
def _scorer(spec: str):
    from denoiser.anomaly import Scorer

    return Scorer.load(spec)


def pixels_of(image) -> tuple[np.ndarray, np.ndarray | None]:
    """Float32 H x W x C pixels in [0, 1] and the alpha plane (or None) of an array or PIL image."""
    array = _pil_samples(image) if _is_pil(image) else np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or not array.shape[0] or not array.shape[1]:
        raise ValueError(f"an image is H x W or H x W x C with C from 1 to 4 and H, W from 1, not {array.shape}")
    alpha = None
    if array.shape[-1] in (2, 4):
        array, alpha = array[..., :-1], array[..., -1]
    scale = SCALES.get(array.dtype)
    if scale is None and not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"pixels are uint8, uint16 or float, not {array.dtype}")
    if scale is None and not np.isfinite(array).all():
        raise ValueError("float pixels must be finite: these hold NaN or infinity")
    return (array / np.float32(scale) if scale else array).astype(np.float32), alpha


def convert(image, function):
    """Run `function` on the image's float pixels and return the result as the image's own kind."""
    pixels, alpha = pixels_of(image)
    result = function(pixels)
    if _is_pil(image):
        return _to_pil(result, alpha, image)
    array = np.asarray(image)
    scale = SCALES.get(array.dtype)
    out = np.round(result * scale).astype(array.dtype) if scale else result.astype(array.dtype)
    if alpha is not None:
        out = np.concatenate([out, alpha[..., None].astype(out.dtype)], axis=-1)
    return out.reshape(array.shape)


def _is_pil(image) -> bool:
    return hasattr(image, "getbands") and hasattr(image, "mode")


def _pil_samples(image) -> np.ndarray:
    """A PIL image's samples: 16-bit gray (either byte order) and 32-bit integer gray as uint16, float gray as float32
    (in [0, 1], as float arrays), the rest as 8-bit samples of the mode it is read in (`_pil_mode`)."""
    if image.mode in SIXTEEN_BIT:
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError("32-bit integer pixels are read as 16-bit ones, and these lie outside 0-65535")
        return values.astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image, np.float32)
    return np.asarray(image.convert(_pil_mode(image)))


def _pil_mode(image) -> str:
    """The 8-bit mode a PIL image is read in: its own for L, LA, RGB and RGBA; L for bilevel; else RGBA where it has
    transparency, RGB where not (LAB's A band is no alpha)."""
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image.mode
    if image.mode == "1":
        return "L"
    return "RGBA" if image.has_transparency_data else "RGB"


def _to_pil(pixels: np.ndarray, alpha: np.ndarray | None, like):
    """Float pixels (and alpha) as a PIL image: of `like`'s own mode for gray at full depth (16-bit, 32-bit, float),
    else of the 8-bit mode it was read in."""
    from PIL import Image

    if like.mode in SIXTEEN_BIT or like.mode == "I":
        levels = np.round(pixels[..., 0] * 65535)
        return Image.fromarray(levels.astype(SIXTEEN_BIT.get(like.mode, np.int32)))
    if like.mode == "F":
        return Image.fromarray(pixels[..., 0].astype(np.float32))
    samples = np.round(pixels * 255).astype(np.uint8)
    if alpha is not None:
        samples = np.concatenate([samples, alpha[..., None].astype(np.uint8)], axis=-1)
    return Image.fromarray(samples[..., 0] if samples.shape[-1] == 1 else samples)
