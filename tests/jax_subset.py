"""Run under KERAS_BACKEND=jax by tests/test_jax_backend.py: the engine, `denoise batch` and `denoise score` on the
JAX backend, with the results written as JSON for the TensorFlow side to compare.

Usage: python tests/jax_subset.py MODELS_DIR IMAGES_DIR WORK_DIR RESULT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def count_compiles() -> list[str]:
    """A list that grows by one entry per XLA compilation from now on."""
    import jax

    compiles: list[str] = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _seconds, **_kw: compiles.append(event) if event == COMPILE_EVENT else None
    )
    return compiles


def tiled_against_whole(model: Path) -> float:
    """The largest difference between a tiled and a one-tile run of one image, away from the bottom and right
    edges: there the one tile's canvas is mirror-padded to the 128-px step, which the model sees (see tiling.py)."""
    from denoiser.artifact import load_artifact
    from denoiser.engine import Engine, Settings

    artifact = load_artifact(model)
    image = np.random.default_rng(0).random((300, 200, 1), dtype=np.float32)
    tiled = Engine(artifact, Settings(tile=128)).denoise(image)
    whole = Engine(artifact, Settings(tile=512)).denoise(image)
    assert Engine(artifact, Settings(tile=128)).plan(300, 200).count > 1, "the tiled run must cut tiles"
    edge = artifact.receptive_radius
    return float(np.abs(tiled - whole)[:-edge, :-edge].max())


def compiles_over_sizes(model: Path) -> dict:
    """Compilations while denoising images of mixed sizes, then again for as many images of other sizes."""
    from denoiser.artifact import load_artifact
    from denoiser.engine import Engine, Settings

    engine = Engine(load_artifact(model), Settings(batch_size=2))
    rng = np.random.default_rng(1)
    first = [(300, 451), (320, 320), (481, 321), (500, 375), (90, 60), (640, 480), (333, 500), (17, 230)]
    second = [(301, 450), (310, 333), (470, 330), (499, 380), (100, 64), (600, 470), (340, 490), (20, 200)]
    counts, shapes = {}, set()
    compiles = count_compiles()
    for name, sizes in (("first", first), ("second", second)):
        before = len(compiles)
        images = [rng.random((h, w, 1), dtype=np.float32) for h, w in sizes]
        for _ in engine.denoise_many(images):
            pass
        counts[name] = len(compiles) - before
        shapes |= {engine.plan(h, w).tile for h, w in sizes}
    return {"compiles": counts, "tile_shapes": len(shapes), "images": len(first)}


def in_flight_against_one_by_one(model: Path) -> dict:
    """Whether the engine's model call returns before its output is read (a JAX array), and the largest difference
    between images denoised with a batch in flight and one batch at a time."""
    import denoiser.engine as engine_module
    from denoiser.artifact import load_artifact
    from denoiser.engine import Engine, Settings

    engine = Engine(load_artifact(model), Settings(tile=128, batch_size=2))
    rng = np.random.default_rng(2)
    images = [rng.random(size + (1,), dtype=np.float32) for size in ((300, 200), (90, 60), (128, 128), (260, 40))]
    blank = np.zeros((1, 128, 128, 1), np.float32)
    started = engine.artifact.start(blank)
    in_flight = list(engine.denoise_many(images))
    default, engine_module.BATCHES_IN_FLIGHT = engine_module.BATCHES_IN_FLIGHT, 0
    try:
        one_by_one = list(engine.denoise_many(images))
    finally:
        engine_module.BATCHES_IN_FLIGHT = default
    return {
        "started_type": type(started).__module__,
        "difference": max(float(np.abs(a - b).max()) for a, b in zip(in_flight, one_by_one)),
        "against_predict": float(np.abs(np.asarray(started) - engine.artifact.predict(blank)).max()),
    }


def on_device_against_engine(model: Path) -> dict:
    """The largest differences between the engine's output and the device check's call that pads, crops and clips on
    the device, for an image that needs padding: in float32, and in 8-bit levels (divided by 255)."""
    from benchmarks.gpu_check import device_call
    from denoiser.artifact import load_artifact
    from denoiser.engine import Engine, Settings

    engine = Engine(load_artifact(model), Settings(tile=512))
    image = np.round(np.random.default_rng(3).random((300, 200, 1), dtype=np.float32) * 255) / 255
    plan, expected = engine.plan(300, 200), engine.denoise(image)
    assert plan.count == 1 and plan.tile != (300, 200), "one tile, padded"
    call = device_call(engine.artifact.model, plan.tile, (300, 200))
    levels = np.asarray(call(np.round(image * 255).astype(np.uint8)))
    return {
        "float32": float(np.abs(np.asarray(call(image)) - expected).max()),
        "uint8": float(np.abs(levels / 255 - expected).max()),
    }


def forward_released(model: Path) -> bool:
    """Whether a model's jitted call leaves the engine's cache once the model is gone."""
    import gc

    from denoiser import artifact

    gc.collect()  # models of earlier steps go first
    before = len(artifact._JAX_FORWARDS)
    loaded = artifact.load_artifact(model)
    np.asarray(loaded.start(np.zeros((1, 128, 128, 1), np.float32)))
    held = len(artifact._JAX_FORWARDS) == before + 1
    del loaded
    gc.collect()
    return held and len(artifact._JAX_FORWARDS) == before


def run_cli(args: list[str]) -> None:
    """Run a `denoise` command in this process; fail on a non-zero exit."""
    from denoiser.cli import main

    try:
        main.main(args, standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            raise


def main(models: Path, images: Path, work: Path, result: Path) -> None:
    import keras

    report = {"backend": keras.backend.backend()}
    report["tiled_vs_whole"] = tiled_against_whole(models / "gray.keras")
    report["compiles"] = compiles_over_sizes(models / "gray.keras")
    report["in_flight"] = in_flight_against_one_by_one(models / "gray.keras")
    report["forward_released"] = forward_released(models / "gray.keras")
    report["on_device"] = on_device_against_engine(models / "gray.keras")
    run_cli(
        ["batch", str(images), str(work / "batch"), "-m", str(models / "gray.keras"), "--precision", "float32", "-q"]
    )
    run_cli(["score", str(images), str(work / "score"), "-q"])
    result.write_text(json.dumps(report))


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:5]))
