"""The `denoised` watch-folder daemon: takes images dropped into an inbox and runs them through denoiser's pipeline."""
