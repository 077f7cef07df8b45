"""`python -m denoise_train`: train a denoiser or an anomaly scorer and export it with its model card."""

from denoise_train.cli import main

main()
