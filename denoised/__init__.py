"""The `denoised` watch-folder daemon: takes images dropped into an inbox and runs them through denoiser's pipeline."""

from denoiser.quiet import quiet_tensorflow

quiet_tensorflow()  # before anything here imports TensorFlow
