"""The training report saved beside an exported scorer: loss curves, a before/after grid and the codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_report(fitted, path: Path, probe: tuple | None = None, count: int = 8) -> Path:
    """One PNG: loss curves, held-out images above their reconstructions, and a 2-D view of the codes.

    The codes are plotted as they are when the latent is 2-D (seed 004) and through t-SNE otherwise
    (seed 001); points are coloured by label when `probe` (images, labels) is given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(15, 5), layout="constrained")
    loss, grid, codes = figure.subfigures(1, 3, width_ratios=[1, 1.3, 1])
    plot_losses(loss.subplots(), fitted.history)
    plot_grid(grid, fitted.scorer, fitted.held_out[:count])
    plot_codes(codes.subplots(), fitted.scorer, probe or (fitted.held_out, None))
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def plot_losses(axes, history: dict) -> None:
    """Training and held-out loss per epoch."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    axes.plot(epochs, history["loss"], label="training")
    axes.plot(epochs, history["val_loss"], label="held out")
    axes.set(xlabel="epoch", ylabel="loss", title="loss")
    axes.legend()


def plot_grid(figure, scorer, images: np.ndarray) -> None:
    """Held-out images (top row) above their reconstructions (bottom row)."""
    reconstruction = scorer.views(images)["reconstruction"].reshape(images.shape)
    axes = figure.subplots(2, len(images), squeeze=False)
    for column, (before, after) in enumerate(zip(images, reconstruction)):
        for row, picture in enumerate((before, after)):
            axes[row, column].imshow(np.clip(picture.squeeze(), 0, 1), cmap="gray", vmin=0, vmax=1)
            axes[row, column].axis("off")
    figure.suptitle("held out (top) and reconstructed (bottom)")


def plot_codes(axes, scorer, probe: tuple) -> None:
    """The codes of the probe images in 2-D, coloured by label where there are labels."""
    images, labels = probe
    codes = np.concatenate([scorer.views(images[i : i + 512])["latent"] for i in range(0, len(images), 512)])
    codes = codes.reshape(len(codes), -1)
    title = "latent codes"
    if codes.shape[1] != 2:
        from sklearn.manifold import TSNE

        codes = TSNE(2, init="pca", random_state=0, perplexity=min(30.0, len(codes) / 4)).fit_transform(codes)
        title = "t-SNE of the codes"
    if labels is None:
        axes.scatter(codes[:, 0], codes[:, 1], s=3)
    else:
        points = axes.scatter(codes[:, 0], codes[:, 1], c=labels, s=3, cmap="tab10")
        axes.figure.colorbar(points, ax=axes, label="label")
    axes.set(title=title)
