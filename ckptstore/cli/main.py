"""``ckptstore``: the command, one module per command group (see ``common`` for targets)."""

from __future__ import annotations

from ckptstore.cli import admin, checkpoints, endpoints  # noqa: F401 - they register commands
from ckptstore.cli.common import app


def main() -> None:
    app()
