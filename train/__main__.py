"""`python -m train`: train a denoiser and export it with its model card."""

from train.cli import main

main()
