"""`python -m denoise_train`, as `denoise train`: train a denoiser or an anomaly scorer, export it with its card."""

from denoise_train.cli import main

main()
