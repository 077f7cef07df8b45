"""Helpers the tests share; fixtures live in conftest.py."""

from __future__ import annotations

from PIL import Image

from denoiser.artifact import measure_receptive_radius


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


def write_image(path, array, **params):
    """Save a uint8 array with Pillow, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **params)
    return path


def tiny_unet(data, out, **changes):
    """The smallest real U-Net training run: width 8, two levels, one epoch of two batches of four 32-px patches,
    in float32 (a denoise_train Recipe; `changes` replace its fields)."""
    from denoise_train.run import Recipe

    recipe = Recipe(str(data), str(out), preset="unet", width=8, levels=2, epochs=1, steps=2, batch_size=4, patch=32)
    return recipe._replace(**({"precision": "float32"} | changes))


def tiny_residual(**changes):
    """A residual net of depth 2 and width 4 on batches of two 16-px patches, for tests that fit in memory (a
    denoise_train Recipe with placeholder data and out; `changes` replace its fields)."""
    from denoise_train.run import Recipe

    return Recipe("d", "o", preset="residual", depth=2, width=4, batch_size=2, patch=16)._replace(**changes)
