"""`python -m denoised`: the same as the `denoised` console script."""

from denoised.cli import main

main(prog_name="denoised")
