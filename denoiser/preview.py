"""Before/after contact sheets, the seeds' figure generalised to any images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from denoiser.imageio import read_image


def _display(path: Path, height: int) -> Image.Image:
    """An image file as an 8-bit RGB thumbnail of the given height."""
    pixels = read_image(path).pixels
    if pixels.shape[-1] == 4:  # CMYK planes, shown the naive way
        pixels = (1.0 - pixels[..., :3]) * (1.0 - pixels[..., 3:])
    rgb = np.broadcast_to(pixels, pixels.shape[:2] + (3,)) if pixels.shape[-1] == 1 else pixels
    image = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def contact_sheet(pairs: list[tuple[Path, Path]], sheet: Path, height: int = 256, gap: int = 8) -> Path:
    """Write a sheet with one row per (before, after) pair, labelled with the file name."""
    rows = [(_display(before, height), _display(after, height), before.name) for before, after in pairs]
    label = 16
    width = max(a.width + b.width for a, b, _ in rows) + 3 * gap
    canvas = Image.new("RGB", (width, len(rows) * (height + label + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    y = gap
    for before, after, name in rows:
        draw.text((gap, y), f"{name}: input", fill="black")
        draw.text((2 * gap + before.width, y), "denoised", fill="black")
        canvas.paste(before, (gap, y + label))
        canvas.paste(after, (2 * gap + before.width, y + label))
        y += height + label + gap
    sheet.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(sheet)
    return sheet
