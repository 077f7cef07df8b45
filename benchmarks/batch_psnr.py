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

from denoiser.evaluate import load_clean, make_noisy
from denoiser.imageio import read_image
from denoiser.noise import parse_noise, psnr


@click.command(context_settings={"show_default": True})
@click.argument("clean", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-n", "--noise", default="gauss:25", help="One degradation, e.g. gauss:25 or sp:10.")
@click.option("-s", "--seed", type=int, default=0)
@click.argument("batch_args", nargs=-1)
def main(clean: Path, noise: str, seed: int, batch_args: tuple[str, ...]) -> None:
    """Noise CLEAN's images, run `denoise batch`, report PSNR before and after."""
    spec = parse_noise(noise)[0]
    with tempfile.TemporaryDirectory() as scratch:
        noisy_dir, out_dir = Path(scratch) / "noisy", Path(scratch) / "out"
        originals = load_clean(clean)
        noisy = make_noisy(originals, spec, seed, noisy_dir)
        denoise = Path(sys.executable).with_name("denoise")  # the one installed beside this Python
        command = [
            str(denoise) if denoise.exists() else "denoise",
            "batch",
            str(noisy_dir),
            str(out_dir),
            "-q",
            *batch_args,
        ]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"denoise batch failed ({run.returncode}):\n{run.stderr}")
        rows = [
            (name, psnr(image, noisy[name]), psnr(image, read_image(out_dir / f"{name}.png").pixels))
            for name, image in originals.items()
        ]
    click.echo(f"{'image':<12}{'noisy dB':>10}{'denoised dB':>13}{'gain':>8}")
    for name, before, after in rows:
        click.echo(f"{name:<12}{before:>10.2f}{after:>13.2f}{after - before:>8.2f}")
    before, after = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    click.echo(f"{'mean':<12}{before:>10.2f}{after:>13.2f}{after - before:>8.2f}")
    click.echo(f"noise {spec}, seed {seed}; denoise batch: {run.stdout.strip()}")


if __name__ == "__main__":
    main()
