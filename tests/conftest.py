"""Shared fixtures: tiny models built and saved like real ones, and a folder of test images."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from denoiser.artifact import save_artifact
from tests.helpers import tiny_card


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
