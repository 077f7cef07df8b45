"""Make the demo's noisy inputs from the clean example photos: Gaussian noise and static, saved as 8-bit files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from denoiser.noise import degrade, parse_noise

# file -> (degradation, format of the noisy file)
RECIPES = {
    "camera.png": ("gauss:25", "camera-gauss25.png"),
    "astronaut.png": ("gauss:15", "astronaut-gauss15.png"),
    "coffee.jpg": ("sp:10", "coffee-static10.png"),
    "chelsea.jpg": ("gauss:25", "chelsea-gauss25.jpg"),
}


def main(clean: Path, noisy: Path) -> None:
    """Write one degraded copy of each example into `noisy`."""
    noisy.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    for name, (noise, target) in RECIPES.items():
        with Image.open(clean / name) as im:
            pixels = np.asarray(im, np.float32) / 255.0
        pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
        degraded = degrade(pixels, parse_noise(noise)[0], rng)
        out = Image.fromarray(np.round(degraded.squeeze() * 255).astype(np.uint8))
        out.save(noisy / target, **({"quality": 95, "subsampling": 0} if target.endswith(".jpg") else {}))
        print(f"{noisy / target}  ({noise})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
