"""Training for denoising autoencoders: presets, on-the-fly noise, export with a model card."""

from denoiser.quiet import quiet_tensorflow

quiet_tensorflow()  # before anything here imports TensorFlow
