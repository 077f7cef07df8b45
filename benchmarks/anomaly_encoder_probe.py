"""Probe: do the shipped denoiser's encoder features find local damage? Validation split only.

Takes an encoder level of a shipped denoiser (`gray` or `color`, a Keras sub-model of named layers, the coarser
level's resolution, 3 x 3 averaged as PatchCore does) on native crops of 160-256 px, and fits on patch features of
crops of the photo scorer's fitting files (every 2nd of them; clean or noisy as `denoise_train.scorer` trains):
- `gaussian`: Mahalanobis distance to one position-independent Gaussian of the patch features (PaDiM-style);
- `knn`: mean whitened distance to the 3 nearest of a random memory bank of patch features (PatchCore-style).
The image score is the mean of the `--top` largest patch distances, the heatmap the distance map upsampled. It is
measured on the validation damaged crops of `anomaly_benchmark.py --split validation --damaged 2` (same seed), beside
the shipped scorer's raw score and max(shipped, gaussian / its 99th percentile on the other fitting files' crops),
which is what a fourth component of the photo scorer would give.

    python benchmarks/anomaly_encoder_probe.py ../shared/data --model gray --layers enc1_add,enc2_add
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly_set as S  # noqa: E402
from anomaly_benchmark import SEEDS  # noqa: E402


class Encoder:
    """A shipped denoiser's encoder levels as patch features (rows: patches of the coarsest level asked for)."""

    def __init__(self, name: str, layers: list[str]):
        import keras

        from denoiser.artifact import load_keras, resolve_model

        model = load_keras(resolve_model(name))
        self.channels = int(model.input_shape[-1])
        self.model = keras.Model(model.input, [model.get_layer(layer).output for layer in layers])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Patch features of an image (H x W x C in [0, 1]): rows x cols x features."""
        from denoiser.anomaly_features import as_rgb, luminance

        rgb = as_rgb(pixels)
        x = luminance(rgb)[..., None] if self.channels == 1 else rgb
        x = x[: x.shape[0] // 8 * 8, : x.shape[1] // 8 * 8]
        outputs = self.model.predict_on_batch(x[None].astype(np.float32))
        outputs = [np.asarray(o)[0] for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
        rows, cols = min(o.shape[0] for o in outputs), min(o.shape[1] for o in outputs)
        features = np.concatenate([resize(o, rows, cols) for o in outputs], axis=-1)
        return np.concatenate(
            [
                cv2.blur(features[..., i : i + 64], (3, 3)).reshape(rows, cols, -1)
                for i in range(0, features.shape[-1], 64)
            ],
            axis=-1,
        )


def resize(maps: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Feature maps area-shrunk to rows x cols (OpenCV takes at most 128 channels at once)."""
    if maps.shape[:2] == (rows, cols):
        return maps
    return np.concatenate(
        [
            cv2.resize(maps[..., i : i + 64], (cols, rows), interpolation=cv2.INTER_AREA).reshape(rows, cols, -1)
            for i in range(0, maps.shape[-1], 64)
        ],
        axis=-1,
    )


def training_crops(files: list[Path], per_file: int, rng: np.random.Generator):
    """Random square crops of 160-256 px, each in a training condition of the photo scorer."""
    from denoise_train.scorer import training_condition
    from denoiser.imageio import read_image

    for path in files:
        photo = read_image(path).pixels
        for _ in range(per_file):
            side = min(int(rng.integers(160, 256)), *photo.shape[:2])
            y, x = int(rng.integers(photo.shape[0] - side + 1)), int(rng.integers(photo.shape[1] - side + 1))
            yield training_condition(photo[y : y + side, x : x + side], rng)


class Model:
    """The Gaussian (mean and whitening) and the memory bank of normal patch features."""

    def __init__(self, patches: np.ndarray, bank: int, rng: np.random.Generator):
        self.mean = patches.mean(axis=0)
        covariance = np.cov(patches, rowvar=False)
        covariance += 0.01 * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
        self.root = np.linalg.cholesky(np.linalg.inv(covariance))
        self.bank = self.whiten(patches[rng.choice(len(patches), min(bank, len(patches)), replace=False)])

    def whiten(self, features: np.ndarray) -> np.ndarray:
        """Features whitened by the Gaussian (rows: patches)."""
        return (features.reshape(-1, len(self.mean)) - self.mean) @ self.root

    def distances(self, features: np.ndarray) -> dict:
        """Per-patch distance maps: to the Gaussian, and to the 3 nearest bank rows."""
        white = self.whiten(features)
        squared = (white**2).sum(1, keepdims=True) - 2 * white @ self.bank.T + (self.bank**2).sum(1)
        knn = np.sqrt(np.maximum(np.partition(squared, 2, axis=1)[:, :3], 0)).mean(axis=1)
        shape = features.shape[:2]
        return {"gaussian": np.sqrt((white**2).sum(1)).reshape(shape), "knn": knn.reshape(shape)}


def top_mean(values: np.ndarray, top: int) -> float:
    """Mean of the `top` largest values."""
    return float(np.sort(values.ravel())[-top:].mean())


def auroc(normal, broken) -> float:
    """AUROC of broken (positive) against normal scores."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(broken))], np.r_[normal, broken]))


def fit(encoder: Encoder, data: Path, patches: int, bank: int, top: int) -> tuple[Model, float]:
    """The model on every 2nd fitting file, and the 99th percentile of the Gaussian rule on the others' crops."""
    from denoise_train.data import list_images
    from denoise_train.scorer import fitting_files

    rng = np.random.default_rng(0)
    files = [p for name in ("train400", "cbsd432") for p in fitting_files(list_images(data / name))]
    rows = []
    for crop in training_crops(files[::2], 2, rng):
        grid = encoder(crop)
        grid = grid.reshape(-1, grid.shape[-1])
        rows.append(grid[rng.choice(len(grid), min(patches, len(grid)), replace=False)])
    model = Model(np.concatenate(rows), bank, rng)
    held = [top_mean(model.distances(encoder(crop))["gaussian"], top) for crop in training_crops(files[1::2], 1, rng)]
    return model, float(np.quantile(held, 0.99))


def measure(encoder: Encoder, model: Model, scale: float, damaged: list, top: int, shipped: str) -> dict:
    """Image and pixel AUROC of each rule, the shipped scorer's, and max(shipped, gaussian / scale)."""
    from sklearn.metrics import roc_auc_score

    from denoiser.anomaly import Scorer

    scorer = Scorer.load(shipped)
    scores = {name: ([], []) for name in ("gaussian", "knn", "shipped", "shipped+gaussian")}
    heat, truth = {"gaussian": [], "knn": []}, []
    for item in damaged:
        for column, pixels in enumerate((item.normal / 255.0, item.damaged / 255.0)):
            maps = model.distances(encoder(pixels))
            raw = scorer.score(pixels)[0].raw
            for name, value in (
                ("gaussian", top_mean(maps["gaussian"], top)),
                ("knn", top_mean(maps["knn"], top)),
                ("shipped", raw),
            ):
                scores[name][column].append(value)
            scores["shipped+gaussian"][column].append(max(raw, top_mean(maps["gaussian"], top) / scale))
        truth.append(item.mask.ravel())
        for name in heat:
            heat[name].append(cv2.resize(maps[name].astype(np.float32), item.mask.shape[::-1]).ravel())
    kinds = np.array([item.kind for item in damaged])
    out = {}
    for name, (normal, broken) in scores.items():
        normal, broken = np.array(normal), np.array(broken)
        out[name] = {"image_auroc": auroc(normal, broken)}
        out[name] |= {kind: auroc(normal[kinds == kind], broken[kinds == kind]) for kind in S.DAMAGES}
        if name in heat:
            out[name]["pixel_auroc"] = float(roc_auc_score(np.concatenate(truth), np.concatenate(heat[name])))
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "name", default="gray", help="Shipped denoiser whose encoder is probed.")
@click.option("--layers", default="enc1_add,enc2_add", help="Its layers, comma-separated.")
@click.option("--patches", type=int, default=60, help="Patches kept of each training crop.")
@click.option("--bank", type=int, default=4000, help="Rows of the kNN memory bank.")
@click.option("--top", type=int, default=10, help="Largest patch distances averaged into the image score.")
@click.option("-S", "--scorer", "shipped", default="scorer", help="The photo scorer to compare and combine with.")
def main(data: Path, name: str, layers: str, patches: int, bank: int, top: int, shipped: str) -> None:
    """Print validation damage AUROCs of encoder features, alone and with the photo scorer."""
    from denoise_train.data import list_images
    from denoise_train.scorer import validation_files

    files = [p for folder in ("train400", "cbsd432") for p in validation_files(list_images(data / folder))]
    damaged = S.damaged_samples(files[::2], 2, SEEDS["validation"] + 2)
    encoder = Encoder(name, layers.split(","))
    model, scale = fit(encoder, data, patches, bank, top)
    click.echo(f"{name} {layers}: {len(damaged)} validation damaged crops, top {top}, scale {scale:.3f}")
    for rule, figures in measure(encoder, model, scale, damaged, top, shipped).items():
        click.echo(f"  {rule:<17} " + "  ".join(f"{key} {value:.4f}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
