"""Image denoising core: I/O, tiling, inference engine and anomaly scoring.

The Python API (denoiser.api; loaded on first use, so `import denoiser` stays light):

    import denoiser

    clean = denoiser.denoise(noisy)          # a uint8, uint16 or float array, or a PIL image: the same kind back
    result = denoiser.score(photo)           # Score(raw, score, anomalous)
    model = denoiser.load("gray", tile=512)  # a Denoiser to keep: model.denoise(image), model.score(image)
    picture = denoiser.read("scan.tif")      # and denoiser.write(path, pixels, like=picture)
"""

__version__ = "0.1.0"

API = ("Denoiser", "Picture", "Score", "Scorer", "denoise", "load", "read", "score", "write")


def __getattr__(name: str):
    if name in API:
        from denoiser import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
