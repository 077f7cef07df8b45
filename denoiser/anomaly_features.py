"""Image statistics for the photo scorer: global ones of a whole image, local ones of its patches.

Everything is computed on a working copy whose short side is `WORK` pixels (area-shrunk, or enlarged for small
images), plus the noise level of the image at its native resolution, so the cost per image is bounded.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK, WORK_LONG = 128, 2048  # short side of the working copy, and its long side at most (a copy's cost is bounded)
WHOLE_GAP = 0.3  # an enlargement this near a whole factor of 2 or more goes to that factor plus this (working_copy)
PATCH, STRIDE = 16, 8  # local patches on the working copy
NATIVE = 512  # the noise level is estimated on at most this square of native pixels
DAMAGE_SHORT, DAMAGE_LONG, DAMAGE_ALIGN = 256, 768, 64  # the damage network's canvas: a bounded set of shapes
# an image darker than this on average (its working copy; the darkest of the shipped scorer's 665 calibration views is
# 0.17) is also measured brightened: its values raised to BRIGHTER, a tone curve that keeps black and white
DARK, BRIGHTER = 0.16, 1 / 2.2
GLOBAL_NAMES = (
    "log_noise_native",
    "log_noise_work",
    "slope_low",
    "slope_high",
    "spectrum_rmse",
    "log_power",
    "peakiness",
    "log_contrast",
    "mean",
    "entropy",
    "flat",
    "log_colours",
    "dominant",
    "axis_edges",
    "edge_sparsity",
    "saturation",
    "saturation_spread",
    "black",
    "white",
    "flat_blocks",
    "log_coarse_16",
    "log_coarse_32",
)
# global statistics left out of the `range` component: levels and shares of pixels, whose 1-99% range on photos
# is no fair yardstick, and the spectrum's peakiness, which repeated structure in real photos (facades, horizons) puts
# beyond the BSD photos' range; the rest, RANGE_NAMES, are the continuous ones
UNRANGED_NAMES = (
    "mean",
    "flat",
    "dominant",
    "saturation",
    "saturation_spread",
    "black",
    "white",
    "flat_blocks",
    "peakiness",
)
RANGE_NAMES = tuple(name for name in GLOBAL_NAMES if name not in UNRANGED_NAMES)
LOCAL_NAMES = (
    "mean_offset",
    "log_std",
    "chroma_a",
    "chroma_b",
    "saturation",
    "log_gradient",
    "coherence",
    "axis_edges",
    "gradient_peak",
    "log_laplacian",
    "flat",
)
CONTEXT = (0, 1, 2, 3, 5, 8, 9)  # local statistics also taken relative to the median of their 5 x 5 neighbourhood
LOCAL_NAMES = LOCAL_NAMES + tuple(f"{LOCAL_NAMES[i]}_vs_context" for i in CONTEXT)
EPS = 1e-3


def colour_planes(pixels: np.ndarray) -> np.ndarray:
    """H x W x C floats (C = 1, 3, or 4 for CMYK) as H x W x 1 gray or H x W x 3 RGB in [0, 1]: gray stays one
    plane, so that it is shrunk before it is repeated into three (the same values, a third of the work)."""
    pixels = np.asarray(pixels, np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[-1] == 4:
        pixels = (1.0 - pixels[..., :3]) * (1.0 - pixels[..., 3:])
    return pixels if pixels.shape[-1] == 1 else pixels[..., :3]


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """H x W x C floats (C = 1, 3, or 4 for CMYK) as H x W x 3 RGB in [0, 1]."""
    planes = colour_planes(pixels)
    return np.repeat(planes, 3, axis=-1) if planes.shape[-1] == 1 else planes


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB image."""
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def working_copy(planes: np.ndarray) -> np.ndarray:
    """The image (`colour_planes`) resized to `working_size` (area when shrinking, linear when enlarging), as RGB."""
    (height, width), scale = working_size(*planes.shape[:2])
    return resized_rgb(planes, height, width, scale)


def working_size(height: int, width: int) -> tuple[tuple[int, int], float]:
    """The working copy's size and scale: its short side WORK, its long side at most WORK_LONG (an image more than
    WORK_LONG / WORK times as long as it is wide is stretched across to WORK). An enlargement near a whole factor
    goes WHOLE_GAP past it: a whole factor keeps the original pixels on the grid, and interpolating between them
    empties the highest frequencies."""
    scale = WORK / min(height, width)
    whole = round(scale)
    scale = whole + WHOLE_GAP if whole >= 2 and abs(scale - whole) < WHOLE_GAP else scale
    scale = min(scale, WORK_LONG / max(height, width))
    return (max(WORK, int(round(height * scale))), max(WORK, int(round(width * scale)))), scale


def resized_rgb(planes: np.ndarray, height: int, width: int, scale: float) -> np.ndarray:
    """Planes (`colour_planes`) resized to height x width, by area where `scale` < 1 and linearly else, as RGB."""
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return as_rgb(cv2.resize(planes, (width, height), interpolation=method).reshape(height, width, planes.shape[-1]))


def damage_scale(height: int, width: int) -> float:
    """How much the damage canvas enlarges (or shrinks) an image: its short side to DAMAGE_SHORT, its long side
    at most DAMAGE_LONG."""
    return min(DAMAGE_SHORT / min(height, width), DAMAGE_LONG / max(height, width))


def damage_canvas(pixels: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as RGB at `damage_scale`, edge-padded to multiples of DAMAGE_ALIGN; and the size of its
    unpadded part."""
    planes = colour_planes(pixels)
    height, width = planes.shape[:2]
    scale = damage_scale(height, width)
    size = (max(1, int(round(height * scale))), max(1, int(round(width * scale))))
    small = resized_rgb(planes, *size, scale)
    pad = ((0, -size[0] % DAMAGE_ALIGN), (0, -size[1] % DAMAGE_ALIGN), (0, 0))
    return np.pad(small, pad, mode="edge"), size


def noise_sigma(gray: np.ndarray) -> float:
    """Donoho's noise estimate: 1.4826 x the median absolute diagonal Haar detail, in [0, 1] units."""
    height, width = (gray.shape[0] // 2) * 2, (gray.shape[1] // 2) * 2
    g = gray[:height, :width]
    detail = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) / 2.0
    return float(1.4826 * np.median(np.abs(detail))) if detail.size else 0.0  # under 2 x 2 pixels: none to measure


def centre(gray: np.ndarray, side: int = NATIVE) -> np.ndarray:
    """The central square of at most `side` pixels (of an H x W or H x W x C array)."""
    height, width = gray.shape[:2]
    y, x = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return gray[y : y + side, x : x + side]


def spectrum(gray: np.ndarray) -> tuple[float, float, float, float, float]:
    """Radial power spectrum of the centre square: low and high slopes, fit error, log power, peakiness."""
    side = min(gray.shape)
    g = centre(gray, side)
    g = (g - g.mean()) * np.outer(np.hanning(side), np.hanning(side))
    power = np.abs(np.fft.fftshift(np.fft.fft2(g))) ** 2 / side**2
    yy, xx = np.indices(power.shape) - side // 2
    radius = np.sqrt(yy**2 + xx**2).astype(int)
    keep = (radius >= 2) & (radius < side // 2)
    sums, counts = np.bincount(radius[keep], power[keep]), np.bincount(radius[keep])
    rings = np.arange(len(sums))[counts > 0]
    profile = np.log(sums[rings] / counts[rings] + 1e-12)
    logf = np.log(rings)
    split = np.log(side / 8)
    low, high = logf <= split, logf > split
    slope_low = np.polyfit(logf[low], profile[low], 1)[0]
    slope_high = np.polyfit(logf[high], profile[high], 1)[0]
    fit = np.polyval(np.polyfit(logf, profile, 1), logf)
    ring_median = np.zeros_like(sums)
    for r in rings:  # a few dozen rings
        ring_median[r] = np.median(power[radius == r])
    peaks = power[keep] / (ring_median[radius[keep]] + 1e-12)
    return (
        float(slope_low),
        float(slope_high),
        float(np.sqrt(np.mean((profile - fit) ** 2))),
        float(np.log(power[keep].mean() + 1e-12)),
        float(np.log(np.quantile(peaks, 0.999) + 1.0)),
    )


def gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel gradients (x, y) of a gray image, per pixel."""
    return (cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3) / 8.0, cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3) / 8.0)


def axis_share(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Per pixel: gradient energy that lies within about 10 degrees of the horizontal or vertical axis."""
    energy = gx**2 + gy**2
    ratio = np.minimum(np.abs(gx), np.abs(gy)) / (np.maximum(np.abs(gx), np.abs(gy)) + 1e-12)
    return energy * (ratio < 0.176)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV-style saturation per pixel."""
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    return (high - low) / (high + 1e-3)


def toned(planes: np.ndarray, power: float) -> np.ndarray:
    """Values raised to `power`: a tone curve that brightens (power < 1) or darkens, keeping black and white."""
    return planes if power == 1.0 else planes**power


def global_features(pixels: np.ndarray, work: np.ndarray | None = None, power: float = 1.0) -> np.ndarray:
    """The image's global statistics, in the order of `GLOBAL_NAMES`, under the tone curve `power` (`toned`);
    `work`: its working copy as it is, where made."""
    planes = colour_planes(pixels)
    native = luminance(as_rgb(toned(centre(planes), power)))
    work = toned(working_copy(planes) if work is None else work, power)
    gray = luminance(work)
    gx, gy = gradients(gray)
    magnitude = np.sqrt(gx**2 + gy**2)
    histogram = np.histogram(gray, 64, (0.0, 1.0))[0] / gray.size
    codes = (np.clip(work, 0, 1) * 31.999).astype(np.int32) @ np.array([1024, 32, 1])
    counts = np.bincount(codes.ravel())
    energy = np.sort((magnitude**2).ravel())[::-1]
    sat = saturation(work)
    blocks = gray[: gray.shape[0] // 8 * 8, : gray.shape[1] // 8 * 8]
    block_std = blocks.reshape(blocks.shape[0] // 8, 8, -1, 8).std(axis=(1, 3))
    return np.array(
        [
            np.log(noise_sigma(native) + EPS),
            np.log(noise_sigma(gray) + EPS),
            *spectrum(gray),
            np.log(gray.std() + EPS),
            gray.mean(),
            -np.sum(histogram[histogram > 0] * np.log(histogram[histogram > 0])),
            np.mean(magnitude < EPS),
            np.log(np.count_nonzero(counts) / codes.size),
            counts.max() / codes.size,
            axis_share(gx, gy).sum() / (energy.sum() + 1e-12),
            energy[: max(1, energy.size // 10)].sum() / (energy.sum() + 1e-12),
            sat.mean(),
            sat.std(),
            np.mean(gray < 0.04),
            np.mean(gray > 0.96),
            np.mean(block_std < 0.004),
            *(np.log(cv2.resize(gray, (n, n), interpolation=cv2.INTER_AREA).std() + EPS) for n in (16, 32)),
        ],
        np.float32,
    )


def box(image: np.ndarray) -> np.ndarray:
    """Mean over each PATCH x PATCH window, sampled every STRIDE pixels (windows inside the image)."""
    means = cv2.boxFilter(image, cv2.CV_32F, (PATCH, PATCH), normalize=True, borderType=cv2.BORDER_REFLECT)
    half = PATCH // 2
    return means[half : image.shape[0] - half + 1 : STRIDE, half : image.shape[1] - half + 1 : STRIDE]


def local_features(pixels: np.ndarray, work: np.ndarray | None = None) -> np.ndarray:
    """Statistics of overlapping patches of the working copy (`work`, where made): rows x cols x len(LOCAL_NAMES)."""
    work = working_copy(colour_planes(pixels)) if work is None else work
    gray = luminance(work)
    gx, gy = gradients(gray)
    energy = gx**2 + gy**2
    mean = box(gray)
    std = np.sqrt(np.maximum(box(gray**2) - mean**2, 0.0))
    a, b = box(work[..., 0] - work[..., 1]), box((work[..., 0] + work[..., 1]) / 2 - work[..., 2])
    jxx, jyy, jxy = box(gx * gx), box(gy * gy), box(gx * gy)
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-6)
    peak = cv2.dilate(energy, np.ones((PATCH, PATCH), np.uint8))[PATCH // 2 :: STRIDE, PATCH // 2 :: STRIDE]
    peak = peak[: mean.shape[0], : mean.shape[1]]
    laplacian = cv2.Laplacian(gray, cv2.CV_32F)
    maps = np.stack(
        [
            mean - np.median(mean),
            np.log(std + EPS),
            a - np.median(a),
            b - np.median(b),
            box(saturation(work)),
            0.5 * np.log(jxx + jyy + 1e-6),
            coherence,
            box(axis_share(gx, gy)) / (jxx + jyy + 1e-6),
            np.log((peak + 1e-6) / (jxx + jyy + 1e-6)),
            0.5 * np.log(box(laplacian**2) + 1e-6),
            box((energy < EPS**2).astype(np.float32)),
        ],
        axis=-1,
    ).astype(np.float32)
    context = np.stack([maps[..., i] - cv2.medianBlur(np.ascontiguousarray(maps[..., i]), 5) for i in CONTEXT], axis=-1)
    return np.concatenate([maps, context], axis=-1)
