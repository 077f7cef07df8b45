"""Which images to measure brightened: a photo scorer's calibration replayed for each darkness bound.

The calibration views of the shipped recipe (`calibration_views`: the held-out BSD views the fit draws) and the
validation views of `anomaly_conditions` (each photo whole and as a crop, in each condition, through JPEG as that
script writes them) and odd inputs are each measured once as they are and once brightened (`BRIGHTER`). For each
bound, an image darker than it keeps the measurement whose `global` distance is nearer; the scales and threshold are
then set on the calibration views as the fit sets them, and the share of each group flagged is printed.

    python benchmarks/anomaly_brightening.py ../shared/data --below 0.1 --below 0.16 --below 0.18 --below 1
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly_benchmark as B  # noqa: E402
import anomaly_conditions as C  # noqa: E402
import anomaly_set as S  # noqa: E402


def measured(scorer, pixels: np.ndarray) -> np.ndarray:
    """The statistics components as the image is and brightened, its damage component, and its mean brightness."""
    from denoiser import anomaly_features as F
    from denoiser.anomaly import damage_level

    planes = F.colour_planes(pixels)
    work, out = F.working_copy(planes), []
    for power in (1.0, F.BRIGHTER):
        statistics = F.global_features(planes, work, power)[None]
        found, _ = scorer.levels(statistics, F.local_features(planes, F.toned(work, power)))
        out += [found["global"], found["range"], found["local"]]
    return np.array([*out, damage_level(scorer.damage_map(planes)), F.luminance(work).mean()])  # the `mean` statistic


def components(rows: np.ndarray, below: float) -> np.ndarray:
    """Each row's components (global, range, local, damage) with images darker than `below` measured both ways."""
    brighter = (rows[:, 7] < below) & (rows[:, 3] < rows[:, 0])
    return np.c_[np.where(brighter[:, None], rows[:, 3:6], rows[:, 0:3]), rows[:, 6]]


def jpeg(pixels: np.ndarray, quality: int | None) -> np.ndarray:
    """8-bit pixels through a JPEG of `quality` (None: unchanged), as floats in [0, 1]."""
    from PIL import Image

    if quality is not None:
        buffer = io.BytesIO()
        C.write(buffer, pixels, quality)
        pixels = np.asarray(Image.open(buffer)).reshape(pixels.shape)
    return pixels.astype(np.float32) / 255


def groups(data: Path, scorer, names: tuple) -> dict:
    """Measured rows of the validation views in each condition (BSD and packaged photos apart) and of odd inputs."""
    views, rng = C.photo_views(data, "validation", 1)
    out = {}
    for name in names:
        change, quality = C.CONDITIONS[name]
        for path, view in views:
            group = "bsd" if path.parent.name in ("train400", "cbsd432") else "packaged"
            row = measured(scorer, jpeg(S.to8(change(view, rng)), quality))
            out.setdefault(f"{name} / {group}", []).append(row)
    for sample in S.odd_samples(20, B.SEEDS["validation"] + 1, data / "fashion-mnist"):
        out.setdefault(f"odd {sample.kind}", []).append(measured(scorer, jpeg(sample.pixels, None)))
    return {name: np.array(rows) for name, rows in out.items()}


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-S", "--scorer", "spec", default="scorer", help="A photo scorer (its statistics and damage network).")
@click.option("--below", "bounds", type=float, multiple=True, default=[0.0, 0.16], help="Darkness bound; repeatable.")
@click.option("--condition", "names", multiple=True, type=click.Choice(list(C.CONDITIONS)), help="Default: all.")
@click.option("--fpr", type=float, default=0.01, help="The calibration's share of held-out views flagged.")
def main(data: Path, spec: str, bounds: tuple, names: tuple, fpr: float) -> None:
    """Print the scales, threshold and shares flagged for each bound (0: nothing measured brightened)."""
    from denoise_train.scorer import ScorerRecipe, calibration_views, photo_files
    from denoiser.anomaly import Scorer

    scorer = Scorer.load(spec)
    folders = os.pathsep.join(str(data / name) for name in ("train400", "cbsd432"))
    recipe = ScorerRecipe(folders, "", preset="photo", crops=4, neighbours=scorer.neighbours, fpr=fpr)
    calibration = np.array([measured(scorer, view) for view in calibration_views(photo_files(recipe)[0], recipe)])
    measured_groups = groups(data, scorer, names or tuple(C.CONDITIONS))
    click.echo(f"{len(calibration)} calibration views, darkest {calibration[:, 7].min():.4f}")
    header = f"{'':24s}" + "".join(f"{f'below {bound:g}':>14s}" for bound in bounds)
    lines, fits = [header], [fit(calibration, bound, fpr) for bound in bounds]
    lines.append(f"{'global scale / threshold':24s}" + "".join(f"{s[0]:8.2f} {t:5.3f}" for s, t in fits))
    for name, rows in measured_groups.items():
        shares = [np.mean((components(rows, bound) / s).max(axis=1) >= t) for bound, (s, t) in zip(bounds, fits)]
        lines.append(f"{name:24s}" + "".join(f"{share:14.2%}" for share in shares))
    click.echo("\n".join(lines))


def fit(calibration: np.ndarray, bound: float, fpr: float) -> tuple[np.ndarray, float]:
    """Scales (each component's (1 - fpr) quantile) and threshold on the calibration views, as the fit sets them."""
    from denoiser.scoring import calibrate

    found = components(calibration, bound)
    scales = np.quantile(found, 1.0 - fpr, axis=0)
    return scales, calibrate((found / scales).max(axis=1), fpr).threshold


if __name__ == "__main__":
    main()
