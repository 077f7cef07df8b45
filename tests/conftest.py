"""Shared fixtures: tiny models built and saved like real ones, and a folder of test images."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

from denoiser.artifact import measure_receptive_radius, save_artifact


def tiny_card(model, name: str, align: int = 1) -> dict:
    """A minimal card, like the train command writes."""
    return {
        "format": "denoise-card/1",
        "name": name,
        "channels": int(model.input_shape[-1]),
        "size_multiple": align,
        "receptive_radius": measure_receptive_radius(model, align),
    }


def stored_dtypes(path) -> list[str]:
    """The dtype of each weight array as stored in a `.keras` archive, sorted."""
    import io
    import zipfile

    import h5py

    from denoiser.artifact import WEIGHTS_ENTRY

    stored = []
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read(WEIGHTS_ENTRY)), "r") as weights:
        weights.visititems(
            lambda name, item: stored.append(str(item.dtype)) if isinstance(item, h5py.Dataset) else None
        )
    return sorted(stored)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of a tiny gray and a tiny colour residual model with random weights."""
    import keras

    from denoise_train.presets import residual

    keras.utils.set_random_seed(1)
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for channels, name in ((1, "gray"), (3, "color")):
        model = residual(channels, depth=3, width=8)
        paths[name] = save_artifact(model, tiny_card(model, f"tiny-{name}"), folder / f"{name}.keras")
    return paths


def write_image(path, array, **params):
    """Save a uint8 array with Pillow, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **params)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a non-daemon thread of ours running."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.name.startswith("denoise")]
    assert not leaked, f"threads leaked: {leaked}"
