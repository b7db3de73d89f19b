"""``ckptstore``: the command, one module per command group (see ``common`` for targets)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from ckptstore.cli import admin, checkpoints, endpoints  # noqa: F401 - they register commands
from ckptstore.cli.common import app, out


def _print_version(asked: bool) -> None:
    if asked:
        out.print(f"ckptstore {version('ckptstore')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Store, list and fetch ML training checkpoints, locally or on a ckptstore server."""


def main() -> None:
    app()
