"""The `denoised` command (run the daemon from a TOML config, or write its systemd unit) and `denoise watch`, which
the `denoise` command finds through the `denoise.commands` entry-point group."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from denoised.config import DAEMON_RULES, DEFAULTS, Config, StartupError
from denoiser import __version__
from denoiser.cli.options import engine_options, scorer_options, setting

CONFIG_HELP = "TOML file with the daemon's settings; DENOISED_<KEY> environment variables override its keys."


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version")
@click.option(
    "-c", "--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help=CONFIG_HELP
)
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
@click.option(
    "-c",
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The config file the service runs with; its inbox and output become ReadWritePaths.",
)
@click.option("-u", "--user", default="denoise", show_default=True, help="Unprivileged user (and group) to run as.")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the unit here (e.g. /etc/systemd/system/denoised.service) instead of printing it.",
)
@click.option(
    "--gpu",
    is_flag=True,
    help="Also the drop-in that lets the service see the NVIDIA GPUs and no other device: "
    "OUT.d/gpu.conf, or printed after the unit (docs/gpu.md).",
)
def install_unit(config: Path, user: str, out: Path | None, gpu: bool) -> None:
    """Print or write the systemd unit for this installation."""
    from denoised.config import StartupError, load_config
    from denoised.systemd import gpu_dropin, render_unit

    try:
        settings = load_config(config)
    except StartupError as error:
        raise click.UsageError(str(error)) from error
    unit = render_unit(config, settings, user)
    if out is None:
        click.echo(unit, nl=False)
        if gpu:
            click.echo(f"\n# drop-in: /etc/systemd/system/denoised.service.d/gpu.conf\n{gpu_dropin()}", nl=False)
        return
    out.write_text(unit)
    if gpu:
        (out.parent / f"{out.name}.d").mkdir(exist_ok=True)
        (out.parent / f"{out.name}.d" / "gpu.conf").write_text(gpu_dropin())
        click.echo(f"wrote {out.parent / f'{out.name}.d' / 'gpu.conf'}", err=True)
    click.echo(f"wrote {out}; now: systemctl daemon-reload && systemctl enable --now {out.stem}", err=True)


def daemon_setting(*flags: str, kind: type, **kwargs):
    """A `denoise watch` option for a daemon setting: the default from Config, the check from DAEMON_RULES."""
    name = flags[-1][2:].replace("-", "_")
    return setting(*flags, default=DEFAULTS[name], kind=kind, rules=DAEMON_RULES, **kwargs)


@click.command()
@click.argument("inbox", metavar="INBOX", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output", metavar="OUTPUT", type=click.Path(path_type=Path))
@engine_options
@scorer_options
@click.option("-r", "--recursive", is_flag=True, help="Also take files in subfolders of INBOX.")
@click.option("-P", "--polling", is_flag=True, help="Poll INBOX every second instead of inotify (network shares).")
@daemon_setting(
    "-s",
    "--settle",
    kind=float,
    help="Seconds a file's size and mtime must stay unchanged when no close-write event is seen.",
)
@daemon_setting(
    "-a",
    "--after",
    kind=str,
    help="What happens to a cleaned original: moved to OUTPUT/processed/, deleted, or kept in INBOX/.denoised-kept/.",
)
@daemon_setting("-L", "--max-latency", kind=float, help="Milliseconds to wait for more files to fill a batch.")
@daemon_setting("-Q", "--queue-size", kind=int, help="Claimed files waiting at most; the rest stay in INBOX.")
@daemon_setting(
    "-M", "--metrics-port", kind=int, help=f"Serve Prometheus metrics on {DEFAULTS['metrics_address']}:PORT (0 = off)."
)
def watch(inbox: Path, output: Path, **options) -> None:
    """Clean every image dropped into INBOX, into OUTPUT, until SIGTERM or SIGINT (SIGHUP restarts the watch).

    Files are taken once complete, claimed into INBOX/.denoised-work/, and run through the same
    pipeline as `denoise batch` (outputs mirror relative paths, records go to OUTPUT/scores.jsonl).
    Anomalous images are also copied to OUTPUT/anomalies/; failed inputs go to OUTPUT/failed/ with
    NAME.error.json. Exit code 0 when stopped by a signal, 2 when it cannot start.
    """
    from denoised.daemon import run_daemon

    try:
        config = Config(inbox=inbox, output=output, **options).check()
    except StartupError as error:
        raise click.UsageError(str(error)) from error
    sys.exit(run_daemon(lambda: config))
