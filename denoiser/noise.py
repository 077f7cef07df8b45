"""Synthetic degradations: Gaussian noise, salt-and-pepper static, saved as 8-bit like real files."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KINDS = ("gauss", "sp")


class NoiseSpec(NamedTuple):
    """One degradation: `gauss` with sigma in 8-bit levels, or `sp` with the percentage of pixels hit."""

    kind: str
    level: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.level:g}"


def parse_noise(text: str) -> list[NoiseSpec]:
    """Parse `gauss:25,sp:10` into specs."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, level = item.partition(":")
        if kind not in KINDS or not level:
            raise ValueError(f"bad noise spec {item!r}: expected one of {', '.join(KINDS)} as KIND:LEVEL")
        specs.append(NoiseSpec(kind, float(level)))
    return specs


def quantize8(image: np.ndarray) -> np.ndarray:
    """Round and clip to 8-bit levels, as a saved file would be."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def gaussian(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of `sigma` 8-bit levels, then quantize to 8 bits."""
    return quantize8(image + rng.normal(0.0, sigma / 255.0, image.shape))


def salt_and_pepper(image: np.ndarray, percent: float, rng: np.random.Generator) -> np.ndarray:
    """Set `percent` % of pixels (all channels together) to black or white at random."""
    hit = rng.random(image.shape[:-1]) < percent / 100.0
    value = rng.random(image.shape[:-1]) < 0.5
    out = image.copy()
    out[hit] = value[hit, None].astype(image.dtype)
    return quantize8(out)


def degrade(image: np.ndarray, spec: NoiseSpec, rng: np.random.Generator) -> np.ndarray:
    """Apply one degradation to an H x W x C float image in [0, 1]."""
    if spec.kind == "gauss":
        return gaussian(image, spec.level, rng)
    return salt_and_pepper(image, spec.level, rng)


def psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(estimate, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) over all channels."""
    import cv2

    x, y = (np.asarray(a, np.float64) * 255.0 for a in (reference, estimate))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a):
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    maps = []
    for c in range(x.shape[-1]):
        a, b = x[..., c], y[..., c]
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(maps))
