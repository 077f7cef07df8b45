"""Image denoising core: I/O, tiling, inference engine and anomaly scoring."""

__version__ = "0.1.0"
