"""The anomaly benchmark's images, made or gathered by code at run time (nothing here is committed as images).

Three parts, each drawn with a fixed seed:
- odd inputs of eleven kinds, drawn procedurally (text pages, charts, UI screenshots, noise fields, flat,
  gradient and near-black frames, checkerboards, stripes, shapes, Fashion-MNIST items upscaled);
- normal photos from given folders, whole and as random crops, clean, with Gaussian noise (sigma 15, 25, 50)
  and with 5% salt-and-pepper static, rounded to 8 bits as saved files are;
- crops of those photos with a scratch, a stain or a patch of another photo pasted in, with the pasted mask.

The test split takes its photos from set12/, mcmaster/ and photos/; the validation split from the training
folders' files that the photo scorer never fits on (`denoise_train.scorer.validation_files`) and, since those are all
BSD scans, from the photos that installed packages ship (`gathered_files`), and draws the odd kinds with another seed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ODD_KINDS = (
    "text",
    "chart",
    "screenshot",
    "noise",
    "flat",
    "gradient",
    "dark",
    "checkerboard",
    "stripes",
    "shapes",
    "fashion",
)
CONDITIONS = ("clean", "gauss:15", "gauss:25", "gauss:50", "sp:5")
DAMAGES = ("scratch", "stain", "patch")
# Photos that packages ship, none of them BSD's nor in the test folders: `pip install scikit-image` (matplotlib is in
# the train extra) and `apt-get install plasma-workspace-wallpapers` (these are its photographs; the rest are drawings)
SAMPLE_PHOTOS = {
    "skimage": (
        "data",
        (
            "astronaut.png",
            "brick.png",
            "camera.png",
            "chelsea.png",
            "coffee.png",
            "grass.png",
            "gravel.png",
            "motorcycle_left.png",
            "rocket.jpg",
        ),
    ),
    "matplotlib": ("mpl-data/sample_data", ("grace_hopper.jpg",)),
}
WALLPAPERS = Path("/usr/share/wallpapers")
WALLPAPER_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
# `apt-get install lomiri-wallpapers-16.04 lomiri-wallpapers-20.04`: contest photographs (the drawings left out)
BACKGROUNDS = Path("/usr/share/backgrounds")
BACKGROUND_PHOTOS = (
    "Bridge_by_Sander_Klootwijk",
    "Dragonfly_by_Bolly",
    "Kleiber_by_Lukas_Baubkus",
    "Picture_0B_by_freespace",
    "Picture_1A_by_freespace",
    "Wine_by_Jakkub_Mede",
    "aitzgorri_by_Aitzol_Berasategi",
    "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi",
    "greentock_by_Peter_Nerlich",
    "life_by_Aitzol_Berasategi",
    "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt",
    "sunset_by_Aitzol_Berasategi",
)
FONTS = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("*.ttf"))
WORDS = (
    "the of and to in is was for on that with as by at from this have are be or an which were not it "
    "report figure total revenue quarter results table data model user account settings open file save "
    "invoice amount date customer service network value error status update version page section"
).split()


class Sample(NamedTuple):
    """One benchmark image: where it came from, its kind or condition, and 8-bit pixels (H x W x 1 or 3)."""

    group: str  # "odd" or "normal"
    kind: str  # odd kind, or the photo's condition
    source: str
    pixels: np.ndarray


class Damaged(NamedTuple):
    """A photo crop, the same crop damaged, and the damage's mask."""

    kind: str
    source: str
    normal: np.ndarray
    damaged: np.ndarray
    mask: np.ndarray


def to8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] as uint8, H x W x C."""
    image = np.asarray(image, np.float32)
    image = image[..., None] if image.ndim == 2 else image
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def font(rng: np.random.Generator, size: int) -> ImageFont.ImageFont:
    """A random DejaVu font at `size` (Pillow's default where none is installed)."""
    if not FONTS:
        return ImageFont.load_default()
    return ImageFont.truetype(str(FONTS[int(rng.integers(len(FONTS)))]), size)


def sentence(rng: np.random.Generator, words: int) -> str:
    """Random words."""
    return " ".join(WORDS[int(i)] for i in rng.integers(len(WORDS), size=words))


def side(rng: np.random.Generator, low: int = 200, high: int = 720) -> tuple[int, int]:
    """A random (width, height)."""
    return int(rng.integers(low, high)), int(rng.integers(low, high))


def text_page(rng: np.random.Generator) -> np.ndarray:
    """A document page: margins, a heading and lines of text in a random font."""
    width, height = side(rng, 300, 800)
    paper = tuple(int(v) for v in rng.integers(225, 256, 3))
    page = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(page)
    size = int(rng.integers(9, 26))
    ink = tuple(int(v) for v in rng.integers(0, 80, 3))
    y, margin = int(rng.integers(10, 60)), int(rng.integers(10, 60))
    draw.text((margin, y), sentence(rng, 4).title(), fill=ink, font=font(rng, size + 8))
    y += size * 3
    body = font(rng, size)
    while y < height - margin:
        draw.text((margin, y), sentence(rng, int(rng.integers(3, 14))), fill=ink, font=body)
        y += int(size * rng.uniform(1.3, 2.0)) + (size * 2 if rng.random() < 0.1 else 0)
    return np.asarray(page, np.float32) / 255


def chart(rng: np.random.Generator) -> np.ndarray:
    """A matplotlib chart: lines, bars, scatter, pie or histogram, with labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, height = side(rng, 300, 800)
    figure, axes = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    kind = int(rng.integers(5))
    x = np.arange(int(rng.integers(5, 40)))
    if kind == 0:
        for _ in range(int(rng.integers(1, 4))):
            axes.plot(x, np.cumsum(rng.normal(size=len(x))), marker="o" if rng.random() < 0.5 else None)
    elif kind == 1:
        axes.bar(x[:12], rng.random(len(x[:12])) * 10)
    elif kind == 2:
        axes.scatter(rng.normal(size=200), rng.normal(size=200), s=8, c=rng.random(200))
    elif kind == 3:
        parts = int(rng.integers(3, 7))
        axes.pie(rng.random(parts) + 0.2, labels=[sentence(rng, 1) for _ in range(parts)])
    else:
        axes.hist(rng.normal(size=500), bins=int(rng.integers(8, 40)))
    axes.set_title(sentence(rng, 3))
    if rng.random() < 0.5:
        axes.grid(True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"), np.float32) / 255


def screenshot(rng: np.random.Generator) -> np.ndarray:
    """A UI screenshot: title bar, side bar, buttons, input boxes and labels, light or dark theme."""
    width, height = side(rng, 320, 900)
    dark = rng.random() < 0.4
    background = tuple(int(v) for v in (rng.integers(20, 60, 3) if dark else rng.integers(220, 256, 3)))
    ink = (230, 230, 230) if dark else (30, 30, 30)
    accent = tuple(int(v) for v in rng.integers(0, 256, 3))
    shot = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(shot)
    bar = int(rng.integers(20, 40))
    draw.rectangle((0, 0, width, bar), fill=accent)
    draw.text((10, bar // 4), sentence(rng, 3), fill=(255, 255, 255), font=font(rng, bar // 2))
    left = int(rng.integers(0, width // 4)) if rng.random() < 0.7 else 0
    if left:
        draw.rectangle((0, bar, left, height), fill=tuple(max(0, c - 15) for c in background))
        for y in range(bar + 10, height - 20, int(rng.integers(22, 36))):
            draw.text((8, y), sentence(rng, 1), fill=ink, font=font(rng, 12))
    for _ in range(int(rng.integers(4, 14))):
        x, y = int(rng.integers(left + 5, width - 60)), int(rng.integers(bar + 5, height - 30))
        w, h = int(rng.integers(50, 200)), int(rng.integers(18, 36))
        if rng.random() < 0.5:
            draw.rounded_rectangle((x, y, x + w, y + h), radius=5, fill=accent)
            draw.text((x + 6, y + 4), sentence(rng, 1), fill=(255, 255, 255), font=font(rng, 12))
        else:
            draw.rectangle((x, y, x + w, y + h), outline=ink, fill=background)
            draw.text((x + 4, y + 4), sentence(rng, 2), fill=ink, font=font(rng, 12))
    return np.asarray(shot, np.float32) / 255


def noise_field(rng: np.random.Generator) -> np.ndarray:
    """A dead or unplugged sensor: Gaussian, uniform, salt-and-pepper, colour or slightly blurred noise."""
    width, height = side(rng)
    channels = 3 if rng.random() < 0.5 else 1
    shape = (height, width, channels)
    kind = int(rng.integers(5))
    if kind == 0:
        image = rng.uniform(0.2, 0.8) + rng.normal(0, rng.choice([10, 25, 50, 100]) / 255, shape)
    elif kind == 1:
        image = rng.random(shape)
    elif kind == 2:
        image = np.full(shape, rng.uniform(0.2, 0.8))
        hit = rng.random((height, width)) < rng.uniform(0.1, 0.5)
        image[hit] = (rng.random((height, width)) < 0.5)[hit, None]
    elif kind == 3:
        image = rng.uniform(0.3, 0.7) + rng.normal(0, 0.2, (height, width, 3))
    else:
        import cv2

        image = cv2.GaussianBlur(rng.normal(0.5, 0.25, shape).astype(np.float32), (0, 0), rng.uniform(0.7, 1.5))
    return image


def flat(rng: np.random.Generator) -> np.ndarray:
    """A flat frame of one colour with slight noise."""
    width, height = side(rng)
    return rng.random(3) + rng.normal(0, rng.uniform(0, 3) / 255, (height, width, 3))


def gradient(rng: np.random.Generator) -> np.ndarray:
    """A linear or radial gradient between two colours, with slight noise."""
    width, height = side(rng)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
    else:
        t = np.hypot(xx - rng.random(), yy - rng.random())
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    a, b = rng.random(3), rng.random(3)
    return a + (b - a) * t[..., None] + rng.normal(0, rng.uniform(0, 3) / 255, (height, width, 3))


def dark(rng: np.random.Generator) -> np.ndarray:
    """A near-black frame (lens cap, dark frame): dark level, slight noise, a few hot pixels."""
    width, height = side(rng)
    level, sigma = rng.uniform(0, 0.05), rng.uniform(0.5, 4) / 255  # drawn in this order, as the recorded runs were
    channels = 1 if rng.random() < 0.3 else 3
    image = level + rng.normal(0, sigma, (height, width, channels))
    hot = rng.random((height, width)) < rng.uniform(0, 0.001)
    image[hot] = 1.0
    return image


def checkerboard(rng: np.random.Generator) -> np.ndarray:
    """A checkerboard of two colours, maybe rotated."""
    width, height = side(rng)
    cell = rng.uniform(4, 64)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.choice([0.0, rng.uniform(0, np.pi)])
    u, v = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
    mask = ((np.floor(u / cell) + np.floor(v / cell)) % 2)[..., None]
    a, b = rng.random(3), rng.random(3)
    return a + (b - a) * mask


def stripes(rng: np.random.Generator) -> np.ndarray:
    """Square-wave or sinusoidal stripes at a random angle and period."""
    width, height = side(rng)
    yy, xx = np.mgrid[0:height, 0:width]
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 80)
    wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    wave = (wave > 0).astype(float) if rng.random() < 0.5 else (wave + 1) / 2
    a, b = rng.random(3), rng.random(3)
    return a + (b - a) * wave[..., None]


def shapes(rng: np.random.Generator) -> np.ndarray:
    """Random rectangles, ellipses and polygons in flat colours on a flat background."""
    width, height = side(rng)
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 25))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        choice = int(rng.integers(3))
        if choice == 0:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif choice == 1:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(3)], fill=fill)
    return np.asarray(image, np.float32) / 255


class Fashion:
    """Fashion-MNIST test items, upscaled to 84-336 pixels."""

    def __init__(self, folder: str | Path):
        from denoise_train.data import load_idx

        self.items = load_idx(folder, "t10k")[0]

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        import cv2

        item = self.items[int(rng.integers(len(self.items)))].reshape(self.items.shape[1:3])
        size = int(rng.integers(84, 337))
        return cv2.resize(
            np.asarray(item, np.float32) / (255.0 if item.dtype == np.uint8 else 1.0),
            (size, size),
            interpolation=cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_NEAREST,
        )


def odd_samples(count: int, seed: int, fashion_folder: str | Path) -> list[Sample]:
    """`count` images of each odd kind."""
    rng = np.random.default_rng(seed)
    makers = {
        "text": text_page,
        "chart": chart,
        "screenshot": screenshot,
        "noise": noise_field,
        "flat": flat,
        "gradient": gradient,
        "dark": dark,
        "checkerboard": checkerboard,
        "stripes": stripes,
        "shapes": shapes,
        "fashion": Fashion(fashion_folder),
    }
    return [Sample("odd", kind, f"{kind}-{i}", to8(makers[kind](rng))) for kind in ODD_KINDS for i in range(count)]


def read_photo(path: Path) -> np.ndarray:
    """An image file as float32 H x W x C in [0, 1] (gray files stay gray)."""
    from denoiser.imageio import read_image

    return np.asarray(read_image(path).pixels, np.float32)


def crop(image: np.ndarray, rng: np.random.Generator, low: float = 0.4, minimum: int = 96) -> np.ndarray:
    """A random crop, its sides `low` to all of the image's, at least `minimum` pixels."""
    height, width = image.shape[:2]
    h = max(min(minimum, height), int(height * rng.uniform(low, 1.0)))
    w = max(min(minimum, width), int(width * rng.uniform(low, 1.0)))
    y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
    return image[y : y + h, x : x + w]


def condition(image: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """The image clean or degraded as the denoiser's noise specs say (rounded to 8 bits)."""
    from denoiser.noise import NoiseSpec, degrade, quantize8

    if name == "clean":
        return quantize8(image)
    kind, level = name.split(":")
    return degrade(image, NoiseSpec(kind, float(level)), rng)


def normal_samples(files: list[Path], crops: int, seed: int) -> list[Sample]:
    """Each photo whole and as `crops` random crops, in every condition."""
    rng = np.random.default_rng(seed)
    out = []
    for path in files:
        photo = read_photo(path)
        for view in [photo] + [crop(photo, rng) for _ in range(crops)]:
            out += [Sample("normal", name, source_name(path), to8(condition(view, name, rng))) for name in CONDITIONS]
    return out


def source_name(path: Path) -> str:
    """`group/name` for a photo: its folder and file, or the package that ships it and the photo's name."""
    if WALLPAPERS in path.parents:
        return f"wallpapers/{path.relative_to(WALLPAPERS).parts[0]}"
    if BACKGROUNDS in path.parents:
        return f"backgrounds/{path.stem}"
    package = next((name for name in SAMPLE_PHOTOS if name in path.parts), None)
    return f"{package or path.parent.name}/{path.name}"


def gathered_files() -> list[Path]:
    """The packaged photos of SAMPLE_PHOTOS, WALLPAPER_PHOTOS (each one's largest JPEG) and BACKGROUND_PHOTOS that
    are installed here."""
    from importlib.util import find_spec

    found = []
    for package, (folder, names) in SAMPLE_PHOTOS.items():
        spec = find_spec(package)
        if spec and spec.origin:
            found += [p for p in (Path(spec.origin).parent / folder / name for name in names) if p.exists()]
    for name in WALLPAPER_PHOTOS:
        sizes = list((WALLPAPERS / name / "contents" / "images").glob("*x*.jpg"))
        found += [max(sizes, key=lambda p: np.prod([int(side) for side in p.stem.split("x")]))] if sizes else []
    return found + [path for path in (BACKGROUNDS / f"{name}.jpg" for name in BACKGROUND_PHOTOS) if path.exists()]


def scratch(shape: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin bright or dark line that wanders across the image from one of its edges: coverage and colour."""
    height, width = shape
    mask = Image.new("L", (width, height), 0)
    edge = int(rng.integers(4))
    start = [
        (rng.uniform(0, width), 0.0),
        (rng.uniform(0, width), float(height)),
        (0.0, rng.uniform(0, height)),
        (float(width), rng.uniform(0, height)),
    ][edge]
    angle = np.arctan2(height / 2 - start[1], width / 2 - start[0]) + rng.normal(0, 0.4)
    points = [start]
    for _ in range(int(rng.integers(3, 7))):
        angle += rng.normal(0, 0.2)
        step = rng.uniform(0.1, 0.2) * max(width, height)
        points.append((points[-1][0] + step * np.cos(angle), points[-1][1] + step * np.sin(angle)))
    ImageDraw.Draw(mask).line(points, fill=255, width=int(rng.integers(1, 4)))
    colour = np.full(3, rng.uniform(0.85, 1.0)) if rng.random() < 0.7 else np.full(3, rng.uniform(0, 0.15))
    return np.asarray(mask, np.float32) / 255 * rng.uniform(0.7, 1.0), colour


def stain(shape: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A soft blob of brown or yellow tint."""
    import cv2

    height, width = shape
    mask = Image.new("L", (width, height), 0)
    radius = rng.uniform(0.08, 0.2) * min(height, width)
    cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
    corners = [
        (cx + radius * rng.uniform(0.6, 1.3) * np.cos(t), cy + radius * rng.uniform(0.6, 1.3) * np.sin(t))
        for t in np.linspace(0, 2 * np.pi, 12, endpoint=False)
    ]
    ImageDraw.Draw(mask).polygon(corners, fill=255)
    soft = cv2.GaussianBlur(np.asarray(mask, np.float32) / 255, (0, 0), radius / 6)
    colour = [np.array([0.35, 0.22, 0.1]), np.array([0.85, 0.75, 0.3])][int(rng.integers(2))]
    return soft * rng.uniform(0.5, 0.8), colour


def damage(image: np.ndarray, kind: str, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The image with one damage, and the damage's mask (bool H x W)."""
    rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    if kind == "patch":
        height, width = image.shape[:2]
        h, w = (int(rng.uniform(0.15, 0.35) * s) for s in (height, width))
        y, x = int(rng.integers(height - h)), int(rng.integers(width - w))
        source = crop(donor, rng, 0.1, 1)
        source = source if source.shape[-1] == 3 else np.repeat(source, 3, axis=-1)
        import cv2

        out = rgb.copy()
        out[y : y + h, x : x + w] = cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, 3)
        mask = np.zeros((height, width), bool)
        mask[y : y + h, x : x + w] = True
    else:
        alpha, colour = (scratch if kind == "scratch" else stain)(image.shape[:2], rng)
        out = rgb * (1 - alpha[..., None]) + colour * alpha[..., None]
        mask = alpha > 0.1 * alpha.max()
    out = out if image.shape[-1] == 3 else out.mean(axis=-1, keepdims=True)
    return out, mask


def damaged_samples(files: list[Path], per_file: int, seed: int, side_range=(160, 256)) -> list[Damaged]:
    """Square crops of each photo, each alone and with one damage (a donor patch from another file)."""
    rng = np.random.default_rng(seed)
    photos = [read_photo(path) for path in files]
    out = []
    for index, (path, photo) in enumerate(zip(files, photos)):
        for i in range(per_file):
            size = min(int(rng.integers(*side_range)), *photo.shape[:2])
            y, x = int(rng.integers(photo.shape[0] - size + 1)), int(rng.integers(photo.shape[1] - size + 1))
            view = photo[y : y + size, x : x + size]
            kind = DAMAGES[(index * per_file + i) % len(DAMAGES)]
            donor = photos[(index + 1 + int(rng.integers(len(photos) - 1))) % len(photos)]
            broken, mask = damage(view, kind, donor, rng)
            out.append(Damaged(kind, path.name, to8(view), to8(broken), mask))
    return out


def test_files(data: str | Path) -> list[Path]:
    """The held-out photos of the final report: Set12, McMaster and photos/."""
    from denoise_train.data import list_images

    return [p for name in ("set12", "mcmaster", "photos") for p in list_images(Path(data) / name)]
