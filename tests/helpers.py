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


def tiff_raw(rng, layout: str, size: tuple[int, int] = (48, 64)) -> bytes:
    """A TIFF laid out as camera raws are: a DNG or a NEF (a small preview first, the sensor data in a SubIFD), or a
    PEF (the sensor data first)."""
    import io

    import numpy as np
    import tifffile

    buffer = io.BytesIO()
    sensor = rng.integers(0, 4096, (2 * size[0], 2 * size[1]), np.uint16)
    preview = rng.integers(0, 256, (*size, 3), np.uint8)
    cfa = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)]
    make = [(271, "s", 0, "NIKON CORPORATION", True)]
    with tifffile.TiffWriter(buffer) as tif:
        if layout == "PEF":
            tif.write(sensor, photometric=32803, extratags=cfa + make)
        else:
            dng = [(50706, "B", 4, (1, 4, 0, 0), True)] if layout == "DNG" else []
            tif.write(preview, photometric="rgb", subfiletype=1, subifds=1, extratags=dng + make)
            tif.write(sensor, photometric=32803, extratags=cfa)
    return buffer.getvalue()
