"""Classical denoisers to compare against: 3x3 median, OpenCV non-local means, BM3D/CBM3D when installed.

All are blind like our models: the noise level they need is estimated from the noisy image.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def estimate_sigma(noisy: np.ndarray) -> float:
    """Noise sigma in 8-bit levels from the median absolute Haar diagonal detail of every channel (Donoho's MAD)."""
    x = np.asarray(noisy, np.float64) * 255.0
    x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2]
    detail = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(detail)) / 0.6745)


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _from_u8(image: np.ndarray, channels: int) -> np.ndarray:
    return image.reshape(image.shape[0], image.shape[1], channels).astype(np.float32) / 255.0


def median3(noisy: np.ndarray) -> np.ndarray:
    """3x3 median filter."""
    return _from_u8(cv2.medianBlur(_to_u8(noisy), 3), noisy.shape[-1])


def nlm(noisy: np.ndarray) -> np.ndarray:
    """OpenCV fast non-local means, 7x7 patches, 21x21 search; h = 0.92 sigma for gray (h=23 at sigma 25),
    0.6 sigma for colour (applied in Lab)."""
    sigma = estimate_sigma(noisy)
    u8 = _to_u8(noisy)
    if noisy.shape[-1] == 1:
        return _from_u8(cv2.fastNlMeansDenoising(u8, None, 0.92 * sigma, 7, 21), 1)
    bgr = cv2.fastNlMeansDenoisingColored(u8[..., ::-1].copy(), None, 0.6 * sigma, 0.6 * sigma, 7, 21)
    return _from_u8(bgr[..., ::-1], 3)


def bm3d(noisy: np.ndarray) -> np.ndarray:
    """BM3D (gray) or CBM3D (colour) from the `bm3d` package."""
    import bm3d as package

    sigma = estimate_sigma(noisy) / 255.0
    if noisy.shape[-1] == 1:
        return np.asarray(package.bm3d(noisy[..., 0], sigma), np.float32)[..., None].clip(0, 1)
    return np.asarray(package.bm3d_rgb(noisy, sigma), np.float32).clip(0, 1)


def available() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The baselines that can run here (BM3D only with the `baselines` extra installed)."""
    methods = {"median3": median3, "nlm": nlm}
    try:
        import bm3d as _  # noqa: F401
    except ImportError:
        return methods
    return methods | {"bm3d": bm3d}
