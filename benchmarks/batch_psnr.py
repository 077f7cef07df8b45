"""PSNR of `denoise batch` on a clean folder with synthetic noise saved as 8-bit PNGs.

    python benchmarks/batch_psnr.py ../shared/data/set12 --noise gauss:25 [-- extra denoise batch options]

Makes the noisy PNGs in a scratch folder, runs the real `denoise batch` command on them,
and prints per-image and mean PSNR of the noisy input and of the output, plus the
command's own summary line (MP/s).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
from PIL import Image

from denoiser.noise import degrade, parse_noise, psnr


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        pixels = np.asarray(im, np.float32) / 255.0
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def save_png(pixels: np.ndarray, path: Path) -> None:
    levels = np.round(pixels * 255).astype(np.uint8)
    Image.fromarray(levels[..., 0] if levels.shape[-1] == 1 else levels).save(path)


@click.command(context_settings={"show_default": True})
@click.argument("clean", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-n", "--noise", default="gauss:25", help="One degradation, e.g. gauss:25 or sp:10.")
@click.option("-s", "--seed", type=int, default=0)
@click.argument("batch_args", nargs=-1)
def main(clean: Path, noise: str, seed: int, batch_args: tuple[str, ...]) -> None:
    """Noise CLEAN's images, run `denoise batch`, report PSNR before and after."""
    spec = parse_noise(noise)[0]
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as scratch:
        noisy_dir, out_dir = Path(scratch) / "noisy", Path(scratch) / "out"
        noisy_dir.mkdir()
        originals = {}
        for path in sorted(p for p in clean.iterdir() if p.is_file()):
            originals[path.stem] = load(path)
            save_png(degrade(originals[path.stem], spec, rng), noisy_dir / f"{path.stem}.png")
        denoise = Path(sys.executable).with_name("denoise")  # the one installed beside this Python
        command = [str(denoise) if denoise.exists() else "denoise", "batch", str(noisy_dir), str(out_dir), "-q",
                   *batch_args]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"denoise batch failed ({run.returncode}):\n{run.stderr}")
        rows = [(name, psnr(image, load(noisy_dir / f"{name}.png")), psnr(image, load(out_dir / f"{name}.png")))
                for name, image in originals.items()]
    click.echo(f"{'image':<12}{'noisy dB':>10}{'denoised dB':>13}{'gain':>8}")
    for name, before, after in rows:
        click.echo(f"{name:<12}{before:>10.2f}{after:>13.2f}{after - before:>8.2f}")
    before, after = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    click.echo(f"{'mean':<12}{before:>10.2f}{after:>13.2f}{after - before:>8.2f}")
    click.echo(f"noise {spec}, seed {seed}; denoise batch: {run.stdout.strip()}")


if __name__ == "__main__":
    main()
