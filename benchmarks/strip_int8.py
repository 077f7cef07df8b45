"""Copy .keras models without their int8 graphs (CPU-only, ONNX Runtime) into a folder: the same float weights in less
space, for a GPU machine that is sent a size-limited copy of the repository (`make gpu-kit`, docs/gpu.md)."""

import sys
import zipfile
from pathlib import Path

from denoiser.int8 import INT8_ENTRY


def strip(source: Path, folder: Path) -> Path:
    """Write `folder/source.name`: every entry of the archive but the int8 graph, stored as Keras stores them."""
    target = folder / source.name
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for entry in old.infolist():
            if entry.filename != INT8_ENTRY:
                new.writestr(entry, old.read(entry))
    return target


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        target = strip(Path(name), folder)
        print(f"{target}: {target.stat().st_size / 1e6:.1f} MB")
