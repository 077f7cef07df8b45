"""Training data: clean images from a folder, random patches, noise synthesised on the fly."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from denoiser.engine import orient
from denoiser.noise import NoiseSpec, WatermarkStyle, degrade, watermark_with_matte

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
MAX_IDX_BYTES = 1 << 30  # what an IDX file may hold unpacked: Fashion-MNIST's largest holds 47 MB


WATERMARK_FONTS = "/usr/share/fonts/truetype/dejavu"  # Debian's fonts-dejavu-core; evaluation uses another font
WATERMARK_OPACITY = (20.0, 60.0)
TRAINING_LOGOS = ("hexagon", "triangle", "cross", "diamond", "bars")  # none of evaluation's denoiser.noise.LOGOS


def training_watermarks(fonts: str | Path = WATERMARK_FONTS, logo_share: float = 0.0) -> WatermarkStyle:
    """Watermark texts, fonts and logos for training, disjoint from the held-out ones that evaluation uses;
    `logo_share` of the watermarks are logos."""
    files = tuple(sorted(str(p) for p in Path(fonts).glob("*.ttf")))
    if not files:
        raise FileNotFoundError(f"no .ttf fonts in {fonts} for watermarks (apt-get install fonts-dejavu-core)")
    texts = ("SAMPLE", "PROOF", "© Studio", "CONFIDENTIAL", "DRAFT", "stock photo", "preview only", "www.example.com")
    return WatermarkStyle(texts, files, TRAINING_LOGOS, logo_share)


class NoiseSettings(NamedTuple):
    """The training degradations: static with probability sp_prob, a watermark with probability wm_prob (a logo
    instead of text in logo_share of them), else Gaussian noise with sigma uniform in [0, sigma_max]."""

    sigma_max: float = 50.0
    sp_prob: float = 0.2
    sp_max: float = 15.0
    wm_prob: float = 0.0
    logo_share: float = 0.0

    def sample(self, rng: np.random.Generator) -> NoiseSpec:
        """Draw one degradation."""
        draw = rng.random()
        if draw < self.sp_prob:
            return NoiseSpec("sp", float(rng.uniform(0.0, self.sp_max)))
        if draw < self.sp_prob + self.wm_prob:
            return NoiseSpec("wm", float(rng.uniform(*WATERMARK_OPACITY)))
        return NoiseSpec("gauss", float(rng.uniform(0.0, self.sigma_max)))

    def style(self) -> WatermarkStyle | None:
        """The training watermark style, or None when no watermarks are drawn."""
        return training_watermarks(logo_share=self.logo_share) if self.wm_prob > 0 else None


class NoImages(FileNotFoundError, ValueError):
    """A data folder without image files; a ValueError too, so the commands report it as bad input."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NoImages(f"no images in {folder}")
    return files


def load_image(path: Path, channels: int) -> np.ndarray:
    """An 8-bit image file as float32 H x W x channels in [0, 1]."""
    with Image.open(path) as im:
        array = np.asarray(im.convert("L" if channels == 1 else "RGB"), np.float32) / 255.0
    return array.reshape(array.shape[0], array.shape[1], channels)


def fingerprint(files: list[Path]) -> str:
    """SHA-256 over the names and contents of the training files."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def split(files: list[Path], every: int = 20) -> tuple[list[Path], list[Path]]:
    """Hold out every `every`-th file for validation."""
    return [f for i, f in enumerate(files) if i % every], files[::every]


class Patches:
    """(noisy, clean) patch batches with fresh noise for each epoch and index (a maker for `feeding.Batches`).

    With `mattes`, the target is {"clean": clean, "matte": the watermark's opacity per pixel (zero without one)},
    for models that also learn where the overlay is.
    """

    def __init__(self, images, noise: NoiseSettings, patch: int, batch_size: int, seed: int = 0, mattes: bool = False):
        self.images, self.noise, self.patch = images, noise, patch
        self.batch_size, self.seed, self.mattes = batch_size, seed, mattes
        self.style = noise.style()

    def batch(self, epoch: int, index: int):
        """Batch `index` of `epoch`: its noise is drawn from both."""
        rng = np.random.default_rng((self.seed, epoch, index))
        noisy, clean, matte = (np.stack(parts) for parts in zip(*(self._triple(rng) for _ in range(self.batch_size))))
        return noisy, ({"clean": clean, "matte": matte} if self.mattes else clean)

    def _triple(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A (noisy, clean, matte) patch; watermarks are drawn on the whole image first, so text keeps the scale
        it has on whole images rather than shrinking to the patch."""
        image = self.images[int(rng.integers(len(self.images)))]
        spec = self.noise.sample(rng)
        whole = watermark_with_matte(image, spec.level, rng, self.style) if spec.kind == "wm" else None
        y = int(rng.integers(image.shape[0] - self.patch + 1))
        x = int(rng.integers(image.shape[1] - self.patch + 1))
        window = (slice(y, y + self.patch), slice(x, x + self.patch))
        turns, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        clean = orient(image[window], turns, flip)
        if whole is None:
            return degrade(clean, spec, rng, self.style), clean, np.zeros(clean.shape[:2] + (1,), np.float32)
        noisy, matte = (orient(part[window], turns, flip) for part in whole)
        return noisy, clean, matte


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not), as used by MNIST and Fashion-MNIST, of at most MAX_IDX_BYTES unpacked."""
    import gzip

    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
        data = handle.read(MAX_IDX_BYTES + 1)
    if len(data) > MAX_IDX_BYTES:
        raise ValueError(f"{path} holds more than {MAX_IDX_BYTES:,} bytes unpacked")
    if data[:2] != b"\0\0" or data[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(dims)


def idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The images and labels files of an IDX folder's `train` or `t10k` split, if present."""
    for suffix in (".gz", ""):
        images, labels = folder / f"{split}-images-idx3-ubyte{suffix}", folder / f"{split}-labels-idx1-ubyte{suffix}"
        if images.is_file() and labels.is_file():
            return images, labels
    return None


def load_idx(folder: str | Path, split: str = "train", label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """IDX images as float32 N x H x W x 1 in [0, 1] and their labels, optionally of one label only."""
    pair = idx_pair(Path(folder), split)
    if pair is None:
        raise FileNotFoundError(f"no {split}-images-idx3-ubyte[.gz] with labels in {folder}")
    images, labels = read_idx(pair[0]), read_idx(pair[1]).astype(np.int64)
    keep = np.ones(len(labels), bool) if label is None else labels == label
    return images[keep, :, :, None].astype(np.float32) / 255.0, labels[keep]


def random_condition(
    image: np.ndarray, rng: np.random.Generator, clean: float, noisy: float, sigma: float, static: float
) -> np.ndarray:
    """The image clean (a `clean` share), with Gaussian noise of sigma 0-`sigma` (a `noisy` share), or with
    0.5-`static` % salt-and-pepper static; rounded to 8 bits."""
    from denoiser.noise import gaussian, quantize8, salt_and_pepper

    draw = rng.random()
    if draw < clean:
        return quantize8(image)
    if draw < clean + noisy:
        return gaussian(image, rng.uniform(0, sigma), rng)
    return salt_and_pepper(image, rng.uniform(0.5, static), rng)
