"""Thumbnails: the share of a split's photos flagged when each is shrunk to a given short side (whole, clean).

Shrinks every photo of the split (`anomaly_benchmark.split_files`) with Pillow's Lanczos filter, writes it as an
8-bit PNG and scores it through `denoiser.pipeline.score_only`, the code of `denoise score`.

    python benchmarks/anomaly_thumbnails.py ../shared/data --split validation --short 16 --short 32 --short 64
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


def thumbnail(pixels: np.ndarray, short: int) -> np.ndarray:
    """8-bit H x W x C pixels shrunk (Lanczos) so that their short side is `short`."""
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    factor = short / min(image.size)
    small = np.asarray(image.resize([max(1, round(side * factor)) for side in image.size], Image.LANCZOS))
    return small.reshape(small.shape[0], small.shape[1], -1)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(sorted(B.SEEDS)), default="validation")
@click.option("-S", "--scorer", "spec", default="scorer", help="Scorer file or shipped name.")
@click.option("--short", "sides", type=int, multiple=True, default=[16, 24, 32, 43, 48, 64, 96], help="Repeatable.")
def main(data: Path, split: str, spec: str, sides: tuple) -> None:
    """Print, for each short side, the share of the split's photos flagged and their median score."""
    from denoiser.anomaly import Scorer

    scorer = Scorer.load(spec)
    photos = [S.to8(S.read_photo(path)) for path in B.split_files(data, split)]
    click.echo(f"{split} split: {len(photos)} photos, whole and clean; scorer {scorer.name}")
    with tempfile.TemporaryDirectory() as folder:
        for short in sides:
            paths = [Path(folder) / f"{short}" / f"{i:04d}.png" for i in range(len(photos))]
            for path, photo in zip(paths, photos):
                B.write_image(path, thumbnail(photo, short))
            scores = np.array([r.score for r in B.score_files(scorer, paths, Path(folder) / "scored")])
            click.echo(f"short side {short:4d}: flagged {np.mean(scores >= 0.5):7.2%}   median {np.median(scores):.3f}")


if __name__ == "__main__":
    main()
