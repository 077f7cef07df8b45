"""The `denoised` command: run the daemon from a TOML config, or write its systemd unit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from denoiser import __version__

CONFIG_HELP = "TOML file with the daemon's settings; DENOISED_<KEY> environment variables override its keys."


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version")
@click.option("-c", "--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help=CONFIG_HELP)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Watch an inbox folder and clean every image dropped into it (see `denoise watch` for the behaviour).

    Runs in the foreground until SIGTERM or SIGINT; SIGHUP re-reads the config.
    """
    if ctx.invoked_subcommand is not None:
        return
    from denoised.config import load_config
    from denoised.daemon import run_daemon

    sys.exit(run_daemon(lambda: load_config(config)))


@main.command("install-unit")
@click.option("-c", "--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The config file the service runs with; its inbox and output become ReadWritePaths.")
@click.option("-u", "--user", default="denoise", show_default=True, help="Unprivileged user (and group) to run as.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the unit here (e.g. /etc/systemd/system/denoised.service) instead of printing it.")
def install_unit(config: Path, user: str, out: Path | None) -> None:
    """Print or write the systemd unit for this installation."""
    from denoised.config import StartupError, load_config
    from denoised.systemd import render_unit

    try:
        settings = load_config(config)
    except StartupError as error:
        raise click.UsageError(str(error)) from error
    unit = render_unit(config, settings, user)
    if out is None:
        click.echo(unit, nl=False)
    else:
        out.write_text(unit)
        click.echo(f"wrote {out}; now: systemctl daemon-reload && systemctl enable --now {out.stem}", err=True)
