"""`python -m train`: train a denoiser or an anomaly scorer and export it with its model card."""

from train.cli import main

main()
