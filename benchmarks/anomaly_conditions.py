"""Photos as they come: the share of a split's photos flagged when saved as JPEG, underexposed, brightened or framed.

Each photo of the split (`anomaly_benchmark.split_files`), whole and as `--crops` random crops, is changed by each
condition, written as a JPEG (quality 92 unless the condition sets it; `png` is the photo as it is, as PNG) and
scored through `denoiser.pipeline.score_only`, the code of `denoise score`. Every scorer scores the same files.

    python benchmarks/anomaly_conditions.py ../shared/data --split validation -S OLD.keras -S models/scorer.keras
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly_benchmark as B  # noqa: E402
import anomaly_set as S  # noqa: E402

PHOTONS = 2000.0  # photons that fill a pixel at full scale, for the sensor's shot noise


def linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB values in linear light."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def srgb(light: np.ndarray) -> np.ndarray:
    """Linear light in sRGB values, clipped to [0, 1]."""
    light = np.clip(light, 0.0, 1.0)
    return np.where(light <= 0.0031308, 12.92 * light, 1.055 * light ** (1 / 2.4) - 0.055)


def night(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposed 3.6 stops under: shot and read noise in linear light, softened as demosaicing does."""
    import cv2

    light = rng.poisson(linear(image) * 0.08 * PHOTONS) / PHOTONS + rng.normal(0, 0.002, image.shape)
    return srgb(cv2.GaussianBlur(light.astype(np.float32), (0, 0), 0.6).reshape(image.shape))


def border(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A white frame, 4% of the short side wide, as prints and shared photos have."""
    width = max(4, int(0.04 * min(image.shape[:2])))
    return np.pad(image, ((width, width), (width, width), (0, 0)), constant_values=1.0)


CONDITIONS = {  # name: (change, JPEG quality or None for PNG)
    "png": (lambda image, rng: image, None),
    "jpeg:90": (lambda image, rng: image, 90),
    "jpeg:75": (lambda image, rng: image, 75),
    "jpeg:50": (lambda image, rng: image, 50),
    "jpeg:30": (lambda image, rng: image, 30),
    "night": (night, 92),
    "dark curve": (lambda image, rng: image**2.2, 92),
    "high key": (lambda image, rng: srgb(linear(image) * 2.5), 92),
    "border": (border, 92),
}


def write(target, pixels: np.ndarray, quality: int | None) -> None:
    """Save 8-bit H x W x 1 or 3 pixels as PNG, or as JPEG at `quality`, to a path or a binary file."""
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options = {"format": "PNG", "compress_level": 1} if quality is None else {"format": "JPEG", "quality": quality}
    image.save(target, **options)


def photo_views(data: Path, split: str, crops: int) -> tuple[list[tuple[Path, np.ndarray]], np.random.Generator]:
    """Each photo of the split whole and as `crops` random crops, with its file; and the generator that drew the
    crops, which goes on to draw the conditions."""
    rng = np.random.default_rng(B.SEEDS[split] + 7)
    views = []
    for path in B.split_files(data, split):
        photo = S.read_photo(path)
        views += [(path, view) for view in [photo] + [S.crop(photo, rng) for _ in range(crops)]]
    return views, rng


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(sorted(B.SEEDS)), default="validation")
@click.option("-S", "--scorer", "specs", multiple=True, default=["scorer"], help="Scorer file or shipped name; repeat.")
@click.option("--crops", type=int, default=1, help="Random crops of each photo besides the whole.")
@click.option("--condition", "names", multiple=True, type=click.Choice(list(CONDITIONS)), help="Default: all.")
def main(data: Path, split: str, specs: tuple, crops: int, names: tuple) -> None:
    """Print, for each condition and scorer, the share of the split's photo views flagged and their median score."""
    from denoiser.anomaly import Scorer

    scorers = [Scorer.load(spec) for spec in specs]
    views, rng = photo_views(data, split, crops)
    click.echo(f"{split} split: {len(views)} views (whole and {crops} crops a photo); scorers {', '.join(specs)}")
    with tempfile.TemporaryDirectory() as folder:
        for name in names or CONDITIONS:
            change, quality = CONDITIONS[name]
            paths = [Path(folder) / f"{i:05d}.{'png' if quality is None else 'jpg'}" for i in range(len(views))]
            for path, (_, view) in zip(paths, views):
                write(path, S.to8(change(view, rng)), quality)  # to8 clips
            line = []
            for scorer in scorers:
                scores = np.array([r.score for r in B.score_files(scorer, paths, Path(folder) / "scored")])
                line.append(f"flagged {np.mean(scores >= 0.5):7.2%}  median {np.median(scores):.3f}")
            click.echo(f"{name:10s}  " + "   |   ".join(line))
            for path in paths:
                path.unlink()


if __name__ == "__main__":
    main()
