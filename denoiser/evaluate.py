"""Side-by-side quality and speed of denoisers on exactly the same 8-bit noisy files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from denoiser.engine import Engine, Settings
from denoiser.imageio import read_image
from denoiser.locations import left_alone
from denoiser.noise import NoiseSpec, degrade, psnr, ssim
from denoiser.settings import check

# A method maps noisy images to restored ones, lazily and in order.
Method = Callable[[list[np.ndarray]], Iterable[np.ndarray]]


class Row(NamedTuple):
    """One method on one degradation, averaged over the images."""

    method: str
    noise: str
    psnr: float
    ssim: float
    mp_per_s: float
    images: int


def per_image(function: Callable[[np.ndarray], np.ndarray]) -> Method:
    """A method from a function of one image."""
    return lambda images: (function(image) for image in images)


def load_clean(folder: Path) -> dict[str, np.ndarray]:
    """The images of a folder (none `left_alone`) as float pixels, by file stem."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not left_alone([p.name]))
    return {path.stem: read_image(path).pixels for path in files}


def save_png8(pixels: np.ndarray, path: Path) -> None:
    """Save float pixels as an 8-bit PNG, rounded and clipped as real files are."""
    levels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(levels[..., 0] if levels.shape[-1] == 1 else levels).save(path)


def make_noisy(clean: dict[str, np.ndarray], spec: NoiseSpec, seed: int, folder: Path) -> dict[str, np.ndarray]:
    """Degrade every image, save it as an 8-bit PNG in `folder`, and return what was saved, read back."""
    rng = np.random.default_rng(seed)
    noisy = {}
    for name, image in clean.items():
        path = folder / f"{name}.png"
        save_png8(degrade(image, spec, rng), path)
        noisy[name] = read_image(path).pixels
    return noisy


def measure(
    name: str, method: Method, spec: NoiseSpec, clean: dict[str, np.ndarray], noisy: dict[str, np.ndarray]
) -> Row:
    """Run one method over all noisy images and score it against the clean ones."""
    started = time.perf_counter()
    restored = list(method(list(noisy.values())))
    seconds = time.perf_counter() - started
    pairs = list(zip(clean.values(), restored))
    megapixels = sum(image.shape[0] * image.shape[1] for image in clean.values()) / 1e6
    return Row(
        name,
        str(spec),
        float(np.mean([psnr(c, r) for c, r in pairs])),
        float(np.mean([ssim(c, r) for c, r in pairs])),
        megapixels / seconds,
        len(pairs),
    )


def evaluate(
    clean: dict[str, np.ndarray], specs: list[NoiseSpec], methods: dict[str, Method], seed: int, folder: Path
) -> Iterator[Row]:
    """Rows for the noisy input itself and every method, for each degradation."""
    for index, spec in enumerate(specs):
        noisy = make_noisy(clean, spec, seed + index, folder / "noisy" / str(spec).replace(":", "-"))
        yield measure("noisy input", lambda images: images, spec, clean, noisy)
        for name, method in methods.items():
            yield measure(name, method, spec, clean, noisy)


def markdown(rows: list[Row]) -> str:
    """A table with one line per method and a `PSNR / SSIM / MP/s` column per degradation."""
    noises = list(dict.fromkeys(row.noise for row in rows))
    methods = list(dict.fromkeys(row.method for row in rows))
    cell = {(row.method, row.noise): row for row in rows}
    lines = [
        "| method | " + " | ".join(f"{n} PSNR / SSIM / MP/s" for n in noises) + " |",
        "|---|" + "---|" * len(noises),
    ]
    for method in methods:
        values = []
        for noise in noises:
            row = cell.get((method, noise))
            speed = "-" if method == "noisy input" else f"{row.mp_per_s:.2f}" if row else ""
            values.append(f"{row.psnr:.2f} / {row.ssim:.4f} / {speed}" if row else "")
        lines.append(f"| {method} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[Row], folder: Path, context: dict) -> tuple[Path, Path]:
    """Write eval.json (rows and context) and eval.md (the table) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    as_json, as_md = folder / "eval.json", folder / "eval.md"
    as_json.write_text(json.dumps({"context": context, "rows": [row._asdict() for row in rows]}, indent=2) + "\n")
    as_md.write_text(markdown(rows))
    return as_json, as_md


def model_spec(spec: str, settings: Settings) -> tuple[str, Settings]:
    """The model and settings of a `MODEL[@[PRECISION][xN]]` spec; what it leaves out comes from `settings`."""
    model, _, options = spec.partition("@")
    precision, _, ensemble = options.partition("x")
    precision = check("precision", precision) if precision else settings.precision
    ensemble = check("ensemble", int(ensemble) if ensemble.isdigit() else ensemble) if ensemble else settings.ensemble
    return model, settings._replace(precision=precision, ensemble=ensemble)


def model_methods(specs: Iterable[str], settings: Settings) -> dict[str, Method]:
    """Warm engines for `MODEL[@[PRECISION][xN]]` specs, keyed by card name, precision and ensemble, or by file
    name where two models share a card name (a model and its retrained copy). ValueError for a bad spec or a model
    given twice alike; FileNotFoundError for a missing model."""
    from denoiser.artifact import resolve_model

    engines = []
    for spec in specs:
        model, spec_settings = model_spec(spec, settings)
        engine = Engine.load(str(resolve_model(model)), spec_settings)
        engine.warm()  # trace before timing
        engines.append((Path(model).stem, engine))
    names = [f"{engine.artifact.card.get('name', stem)}{variant(engine)}" for stem, engine in engines]
    labels = [
        name if names.count(name) == 1 else f"{stem}{variant(engine)}" for name, (stem, engine) in zip(names, engines)
    ]
    if len(set(labels)) < len(labels):
        raise ValueError("a model is given twice with the same precision and ensemble")
    return {label: engine.denoise_many for label, (_, engine) in zip(labels, engines)}


def variant(engine: Engine) -> str:
    """How a model runs, for its label: `@bfloat16`, or `@bfloat16x8` for a self-ensemble of 8."""
    ensemble = engine.settings.ensemble
    return f"@{engine.precision}" + (f"x{ensemble}" if ensemble > 1 else "")
