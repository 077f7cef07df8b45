"""The Python API: numpy arrays and PIL images in, the same kind out, through the engine `denoise batch` uses."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import denoiser
from denoiser.engine import Engine, Settings


@pytest.fixture
def photo(rng) -> np.ndarray:
    """A smooth 48 x 40 RGB float image with noise, in [0, 1]."""
    y, x = np.mgrid[0:48, 0:40] / 48.0
    clean = np.stack([x, y, (x + y) / 2], axis=-1)
    return np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)


def test_import_denoiser_stays_light_until_the_api_is_used():
    code = "import sys, denoiser; denoiser.load; print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_uint8_gray_array_round_trips_through_the_same_engine(photo, tiny_models):
    gray = np.round(photo[..., 0] * 255).astype(np.uint8)
    clean = denoiser.denoise(gray, model=str(tiny_models["gray"]), tile=32)
    assert clean.dtype == np.uint8 and clean.shape == gray.shape
    expected = Engine.load(str(tiny_models["gray"]), Settings(tile=32)).denoise(gray[..., None] / np.float32(255))
    assert np.array_equal(clean, np.round(np.clip(expected[..., 0], 0, 1) * 255).astype(np.uint8))


def test_uint16_float_and_alpha_keep_their_kind(photo, tiny_models):
    model = denoiser.load(str(tiny_models["color"]), tile=32, batch_size=2)
    deep = np.round(photo * 65535).astype(np.uint16)
    assert model.denoise(deep).dtype == np.uint16 and model.denoise(deep).shape == deep.shape
    alpha = np.linspace(0, 1, photo.shape[0] * photo.shape[1], dtype=np.float32).reshape(photo.shape[:2])
    rgba = np.concatenate([photo, alpha[..., None]], axis=-1)
    clean = model.denoise(rgba)
    assert clean.dtype == np.float32 and np.array_equal(clean[..., 3], alpha)
    assert np.abs(clean[..., :3] - photo).mean() > 0 and 0 <= clean.min() and clean.max() <= 1


def test_pil_images_come_back_as_pil_images_of_their_mode(photo, tiny_models):
    picture = Image.fromarray(np.round(photo * 255).astype(np.uint8))
    for image in (picture, picture.convert("L"), picture.convert("RGBA")):
        clean = denoiser.denoise(image, model=str(tiny_models["color"]), tile=32)
        assert isinstance(clean, Image.Image) and (clean.mode, clean.size) == (image.mode, image.size)
    for mode, read_as in (("1", "L"), ("P", "RGB"), ("PA", "RGBA"), ("CMYK", "RGB"), ("LAB", "RGB")):
        clean = denoiser.denoise(picture.convert(mode), model=str(tiny_models["color"]), tile=32)
        assert (clean.mode, clean.size) == (read_as, picture.size), mode


def test_pil_images_of_16_bits_either_byte_order_32_bits_and_floats_keep_their_depth(photo, tiny_models):
    model = denoiser.load(str(tiny_models["gray"]), tile=32)
    levels = np.round(photo[..., 0] * 65535).astype(np.uint16)
    expected = model.denoise(levels)
    for dtype in (np.uint16, ">u2", np.int32):  # PIL modes I;16, I;16B (big-endian TIFFs) and I
        image = Image.fromarray(levels.astype(dtype))
        clean = model.denoise(image)
        assert clean.mode == image.mode and np.array_equal(np.asarray(clean).astype(np.uint16), expected), image.mode
    floats = photo[..., 0].copy()
    clean = model.denoise(Image.fromarray(floats))
    assert clean.mode == "F" and np.array_equal(np.asarray(clean), model.denoise(floats))
    with pytest.raises(ValueError, match="outside 0-65535"):
        model.denoise(Image.fromarray(levels.astype(np.int32) + 65536))


def test_score_and_read_write(photo, tiny_models, tmp_path):
    result = denoiser.score(photo)
    assert isinstance(result, denoiser.Score) and 0 <= result.score and isinstance(result.anomalous, bool)
    path = tmp_path / "in.png"
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(path)
    picture = denoiser.read(path)
    model = denoiser.load(str(tiny_models["color"]), tile=32)
    denoiser.write(tmp_path / "out.png", model.denoise(picture.pixels), like=picture)
    assert denoiser.read(tmp_path / "out.png").pixels.shape == photo.shape
    assert model.score(photo) == result


def test_bad_images_are_refused_in_words(tiny_models):
    with pytest.raises(ValueError, match="H x W or H x W x C"):
        denoiser.denoise(np.zeros((2, 3, 4, 5), np.uint8), model=str(tiny_models["gray"]))
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        denoiser.denoise(np.zeros((8, 8), np.int32), model=str(tiny_models["gray"]))
    with pytest.raises(ValueError, match="H, W from 1"):
        denoiser.score(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="tile must be at least 16"):
        denoiser.load(str(tiny_models["gray"]), tile=0)
    with pytest.raises(ValueError, match="batch_size must be at least 1, or auto"):
        denoiser.load(str(tiny_models["gray"]), batch_size=0)
    with pytest.raises(TypeError, match="unknown settings tiles"):
        denoiser.load(str(tiny_models["gray"]), tiles=64)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="must be finite"):
            denoiser.denoise(np.full((8, 8), bad, np.float32), model=str(tiny_models["gray"]))
        with pytest.raises(ValueError, match="must be finite"):
            denoiser.score(np.full((8, 8, 3), bad))
