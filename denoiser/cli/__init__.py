"""The `denoise` command line: a thin click group, one module per command.

Commands from other installed packages join it through the `denoise.commands` entry-point group (`denoised`
registers `watch` there), so the core imports nothing above it.
"""

from __future__ import annotations

import ast
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from importlib.util import find_spec
from pathlib import Path

import click

from denoiser import __version__
from denoiser.cli.batch import batch
from denoiser.cli.bench import bench
from denoiser.cli.eval import eval_command
from denoiser.cli.score import score
from denoiser.cli.status import status
from denoiser.quiet import quiet_tensorflow

quiet_tensorflow()  # before any command imports TensorFlow

PLUGINS = "denoise.commands"


@cache
def plugins() -> dict[str, EntryPoint]:
    """The commands installed packages register under PLUGINS, by name."""
    return {entry.name: entry for entry in entry_points(group=PLUGINS)}


class PluginGroup(click.Group):
    """A click group that also offers the PLUGINS commands, each imported only when it is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in plugins():
            command = plugins()[name].load()
            self.add_command(command, name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands; a plugin not loaded yet is described by its function's docstring (`plugin_summary`),
        so that listing imports none of them (training's imports TensorFlow)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))  # as click's own listing truncates
        rows = []
        for name in names:
            command = super().get_command(ctx, name)
            rows.append(
                (name, command.get_short_help_str(limit) if command else plugin_summary(plugins()[name], limit))
            )
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def plugin_summary(entry: EntryPoint, limit: int) -> str:
    """A plugin command's short help, from its function's docstring in the source, without importing it."""
    spec = find_spec(entry.module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8")) if spec and spec.origin else ast.Module([], [])
    docs = [
        ast.get_docstring(node) for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == entry.attr
    ]
    return click.Command(entry.name, help=docs[0]).get_short_help_str(limit) if docs else ""


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version")
def main() -> None:
    """Remove noise and static from images and score how anomalous each one is."""


main.add_command(batch)
main.add_command(bench)
main.add_command(eval_command)
main.add_command(score)
main.add_command(status)
