"""HEIF (HEIC) outputs: the file size, PSNR and encoding time of each x265 quality, for photos re-encoded as read.

    python benchmarks/heif_quality.py PHOTO.heic [PHOTO.heic ...] [--quality 50 75 90]

Each photo is read as `denoise` reads it and written back with imageio's HEIF encoder at each quality; the PSNR is
against the pixels read, so it measures what the encoder loses, not the denoiser. denoiser.imageio.HEIF_QUALITY is
the product's choice.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from denoiser.imageio import read_image, write_image


def measure(path: Path, quality: int, folder: Path) -> tuple[int, float, float]:
    """(bytes, PSNR in dB, seconds to encode and write) of one photo written at one quality."""
    picture = read_image(path)
    like = picture._replace(meta=replace(picture.meta, options={**picture.meta.options, "quality": quality}))
    out = folder / f"q{quality}-{path.name}"
    started = time.perf_counter()
    write_image(out, picture.pixels, like)
    seconds = time.perf_counter() - started
    error = np.mean((read_image(out).pixels.astype(np.float64) - picture.pixels) ** 2)
    return os.path.getsize(out), 10 * np.log10(1 / error), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--quality", nargs="+", type=int, default=[50, 70, 75, 90])
    args = parser.parse_args(argv)
    print(f"{'photo':<24} {'size':>11} {'input bytes':>12} {'quality':>8} {'bytes':>10} {'ratio':>6} {'PSNR':>9}", "s")
    with tempfile.TemporaryDirectory() as folder:
        for path in args.photos:
            meta = read_image(path).meta
            for quality in args.quality:
                size, psnr, seconds = measure(path, quality, Path(folder))
                ratio = size / path.stat().st_size
                print(
                    f"{path.name:<24} {meta.width:>5}x{meta.height:<5} {path.stat().st_size:>12} {quality:>8} "
                    f"{size:>10} {ratio:>6.2f} {psnr:>6.2f} dB {seconds:>6.1f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
