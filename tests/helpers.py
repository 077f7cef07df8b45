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
