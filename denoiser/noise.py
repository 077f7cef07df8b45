"""Synthetic degradations: Gaussian noise, salt-and-pepper static, saved as 8-bit like real files."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KINDS = ("gauss", "sp", "wm", "logo")


class NoiseSpec(NamedTuple):
    """One degradation: `gauss` (sigma in 8-bit levels), `sp` (percent of pixels hit), `wm` (text watermark
    opacity %) or `logo` (logo overlay opacity %)."""

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


class WatermarkStyle(NamedTuple):
    """The texts and fonts watermarks are drawn from (font None = Pillow's bundled Aileron), and the logos
    (LOGO_SHAPES) drawn instead of text in `logo_share` of them."""

    texts: tuple[str, ...]
    fonts: tuple[str | None, ...]
    logos: tuple[str, ...] = ()
    logo_share: float = 0.0


# What evaluation uses: texts and a font that training never sees.
HELD_OUT = WatermarkStyle(("© Copyright 2026", "WATERMARK", "do not copy", "Acme Images", "UNPAID PROOF"), (None,))


def _font(name: str | None, size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size) if name is None else ImageFont.truetype(name, size)


def _stamped(
    height: int, width: int, rng: np.random.Generator, box: tuple[int, int], spacing: tuple[float, float], stamp
) -> np.ndarray:
    """Coverage in [0, 1] of one stamp of `box` (width, height) in the middle, or of a staggered grid of stamps
    `spacing` boxes apart, tilted by up to 40 degrees.

    Args:
        stamp: draws one copy with its box's top left at (x, y): stamp(draw, x, y).
    """
    from PIL import Image, ImageDraw

    side = int(np.hypot(height, width)) + 1
    layer = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(layer)
    if rng.random() < 0.5:
        stamp(draw, (side - box[0]) // 2, (side - box[1]) // 2)
    else:
        step_x, step_y = int(box[0] * spacing[0]) + 1, int(box[1] * spacing[1]) + 1
        for row, y in enumerate(range(0, side, step_y)):
            for x in range(-(row % 2) * step_x // 2, side, step_x):
                stamp(draw, x, y)
    layer = layer.rotate(float(rng.uniform(-40, 40)), resample=Image.Resampling.BILINEAR)
    y0, x0 = (side - height) // 2, (side - width) // 2
    return np.asarray(layer, np.float32)[y0 : y0 + height, x0 : x0 + width] / 255.0


def watermark_mask(height: int, width: int, rng: np.random.Generator, style: WatermarkStyle = HELD_OUT) -> np.ndarray:
    """A text overlay's coverage in [0, 1]: one big tilted text, or a tilted grid of smaller copies."""
    text = style.texts[int(rng.integers(len(style.texts)))]
    size = max(10, int(min(height, width) * rng.uniform(0.06, 0.16)))
    font = _font(style.fonts[int(rng.integers(len(style.fonts)))], size)
    left, top, right, bottom = font.getbbox(text)
    return _stamped(
        height,
        width,
        rng,
        (right - left, bottom - top),
        (1.4, 3.0),
        lambda draw, x, y: draw.text((x, y), text, fill=255, font=font),
    )


def _polygon(draw, cx: float, cy: float, radius, corners: int, turn: float = 0.0, fill: int = 255) -> None:
    """A polygon of `corners` evenly turned around (cx, cy), its first corner `turn` of a full turn from the top;
    with several radii, the corners take them in turn (two make a star)."""
    angles = 2 * np.pi * (turn + np.arange(corners) / corners)
    radii = np.resize(np.asarray(radius, np.float64), corners)
    draw.polygon(list(zip(cx + radii * np.sin(angles), cy - radii * np.cos(angles))), fill=fill)


def _ring_star(draw, x, y, size, cx, cy, line):
    draw.ellipse((x, y, x + size, y + size), outline=255, width=line)
    _polygon(draw, cx, cy, (0.16 * size, 0.4 * size), 10)


def _shield(draw, x, y, size, cx, cy, line):
    draw.polygon([(x, y), (x + size, y), (x + size, cy), (cx, y + size), (x, cy)], fill=255)
    draw.rectangle((x + size // 3, y + size // 5, x + 2 * size // 3, cy), fill=0)


def _target(draw, x, y, size, cx, cy, line):
    for shrink in (0, size // 6, size // 3):
        draw.ellipse((x + shrink, y + shrink, x + size - shrink, y + size - shrink), outline=255, width=line)


def _play(draw, x, y, size, cx, cy, line):
    draw.ellipse((x, y, x + size, y + size), fill=255)
    draw.polygon([(cx - size / 6, cy - size / 4), (cx - size / 6, cy + size / 4), (cx + size / 4, cy)], fill=0)


def _badge(draw, x, y, size, cx, cy, line):
    draw.rounded_rectangle((x, y, x + size, y + size), radius=size // 5, outline=255, width=line)
    draw.rounded_rectangle(
        (x + size // 4, y + size // 4, x + 3 * size // 4, y + 3 * size // 4), radius=size // 10, fill=255
    )


def _hexagon(draw, x, y, size, cx, cy, line):
    _polygon(draw, cx, cy, size / 2, 6)
    _polygon(draw, cx, cy, size / 2 - 1.5 * line, 6, fill=0)


def _triangle(draw, x, y, size, cx, cy, line):
    _polygon(draw, cx, cy, size / 2, 3)
    _polygon(draw, cx, cy, size / 5, 3, turn=0.5, fill=0)


def _cross(draw, x, y, size, cx, cy, line):
    draw.rectangle((cx - size / 6, y, cx + size / 6, y + size), fill=255)
    draw.rectangle((x, cy - size / 6, x + size, cy + size / 6), fill=255)
    draw.rectangle((cx - size / 16, cy - size / 16, cx + size / 16, cy + size / 16), fill=0)


def _diamond(draw, x, y, size, cx, cy, line):
    _polygon(draw, cx, cy, size / 2, 4)
    _polygon(draw, cx, cy, size / 2 - 1.5 * line, 4, fill=0)
    _polygon(draw, cx, cy, size / 8, 4)


def _bars(draw, x, y, size, cx, cy, line):
    for left in (0, 2, 4):
        draw.rectangle((x + left * size / 5, y + (4 - left) * size / 10, x + (left + 1) * size / 5, y + size), fill=255)
    draw.rectangle((x, y + size - line, x + size, y + size), fill=0)


# Logo shapes, each drawn filling a square of `size` at (x, y) (centre cx, cy; stroke `line`): 255 shape, 0 cut-out.
LOGO_SHAPES = {
    "ring-star": _ring_star,
    "shield": _shield,
    "target": _target,
    "play": _play,
    "badge": _badge,
    "hexagon": _hexagon,
    "triangle": _triangle,
    "cross": _cross,
    "diamond": _diamond,
    "bars": _bars,
}
# What evaluation's logo:OPACITY draws: shapes that training (denoise_train.data.TRAINING_LOGOS) never does.
LOGOS = ("ring-star", "shield", "target", "play", "badge")


def logo_mask(height: int, width: int, rng: np.random.Generator, kinds: tuple[str, ...] = LOGOS) -> np.ndarray:
    """A logo overlay's coverage in [0, 1]: one of `kinds`, large and alone or smaller in a tilted grid."""
    draw_logo = LOGO_SHAPES[kinds[int(rng.integers(len(kinds)))]]
    size = max(12, int(min(height, width) * rng.uniform(0.15, 0.4)))
    line = max(2, size // 10)
    return _stamped(
        height,
        width,
        rng,
        (size, size),
        (1.6, 1.6),
        lambda draw, x, y: draw_logo(draw, x, y, size, x + size / 2, y + size / 2, line),
    )


def overlay_mask(height: int, width: int, rng: np.random.Generator, style: WatermarkStyle = HELD_OUT) -> np.ndarray:
    """A watermark's coverage: a logo of the style's in its `logo_share` of draws, else text."""
    if style.logo_share and rng.random() < style.logo_share:
        return logo_mask(height, width, rng, style.logos)
    return watermark_mask(height, width, rng, style)


def blend_overlay(
    image: np.ndarray, mask: np.ndarray, opacity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend a white, black or gray overlay of coverage `mask` at `opacity` percent and quantize to 8 bits;
    also the overlay's opacity per pixel (its matte, H x W x 1)."""
    alpha = mask[..., None] * (opacity / 100.0)
    colour = rng.choice([0.0, 1.0, float(rng.uniform(0.3, 0.7))])
    return quantize8(image * (1.0 - alpha) + colour * alpha), alpha


def watermark(
    image: np.ndarray, opacity: float, rng: np.random.Generator, style: WatermarkStyle = HELD_OUT
) -> np.ndarray:
    """Blend a white, black or gray text (or the style's logo) overlay at `opacity` percent, then quantize to 8 bits."""
    return watermark_with_matte(image, opacity, rng, style)[0]


def watermark_with_matte(
    image: np.ndarray, opacity: float, rng: np.random.Generator, style: WatermarkStyle = HELD_OUT
) -> tuple[np.ndarray, np.ndarray]:
    """`watermark`, and the overlay's opacity per pixel (its matte, H x W x 1)."""
    return blend_overlay(image, overlay_mask(image.shape[0], image.shape[1], rng, style), opacity, rng)


def degrade(
    image: np.ndarray, spec: NoiseSpec, rng: np.random.Generator, style: WatermarkStyle = HELD_OUT
) -> np.ndarray:
    """Apply one degradation to an H x W x C float image in [0, 1]; watermarks are drawn in `style`."""
    if spec.kind == "gauss":
        return gaussian(image, spec.level, rng)
    if spec.kind == "wm":
        return watermark(image, spec.level, rng, style)
    if spec.kind == "logo":
        return blend_overlay(image, logo_mask(image.shape[0], image.shape[1], rng), spec.level, rng)[0]
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
