"""Training for denoising autoencoders: presets, on-the-fly noise, export with a model card."""
