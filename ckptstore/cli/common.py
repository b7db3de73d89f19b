"""What every command shares: the app, the target (store or server), output and errors.

A command runs against an embedded store (``--store PATH`` / ``CKPTSTORE_STORE``)
or, with ``--server URL`` / ``CKPTSTORE_SERVER``, against a server using the
key in ``CKPTSTORE_API_KEY``: the same command line works on both. A user
mistake prints one line on stderr and exits with its error class's
``exit_code``, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ckptstore.client import Client
from ckptstore.errors import AuthenticationFailed, CkptStoreError, InvalidArgument, NotFound
from ckptstore.formatting import human_size, iso_time
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.checkpoints import CheckpointStore
from ckptstore.store.chunking.sources import Readable, ReadsBytes, readinto_of

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Store, list and fetch ML training checkpoints, locally or on a ckptstore server.",
)
out = Console()
err = Console(stderr=True)

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", envvar="CKPTSTORE_STORE", help="Embedded store directory."),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server", envvar="CKPTSTORE_SERVER", help="Server URL (key: CKPTSTORE_API_KEY)."
    ),
]
KeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="CKPTSTORE_API_KEY", help="API key for --server.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DataOpt = Annotated[
    Path, typer.Option("--data", envvar="CKPTSTORE_DATA", help="The server's store directory.")
]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        envvar="CKPTSTORE_CATALOG",
        help="The store's catalog: a postgresql:// URL (default: SQLite in the store directory).",
    ),
]
BlocksOpt = Annotated[
    str | None,
    typer.Option(
        "--blocks",
        envvar="CKPTSTORE_BLOCKS",
        help="Where the packs are: a directory or s3://bucket/prefix (endpoint:"
        " CKPTSTORE_S3_ENDPOINT, credentials: AWS_*; default: packs/ in the store directory).",
    ),
]
REFERENCE_HELP = (
    "A checkpoint id, a unique prefix of one (8 characters or more),"
    " or JOB:latest, JOB:best, JOB:final."
)
CheckpointArg = Annotated[str, typer.Argument(metavar="CHECKPOINT", help=REFERENCE_HELP)]
DEFAULT_STORE = None  # no silent default: a command names its store or its server

Target = CheckpointStore | Client


def fail(message: str, code: int = 2) -> typer.Exit:
    # escaped: a message quotes what the user gave, which rich would read as markup
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _exit_codes() -> Iterator[None]:
    """A user's mistake as one line on stderr and its error class's exit code."""
    try:
        yield
    except CkptStoreError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except BrokenPipeError:  # the reader went away (`pull -o - | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except OSError as exc:
        raise fail(f"{exc.strerror or exc}: {exc.filename or ''}", 1) from None


@contextmanager
def target(
    store: Path | None,
    server: str | None = None,
    api_key: str | None = None,
    catalog: str | None = None,
    blocks: str | None = None,
    *,
    create: bool = False,
) -> Iterator[Target]:
    """The server if one is named, else the embedded store (its catalog at ``catalog``,
    its packs at ``blocks``, when given); errors become exit codes. Only a command
    that stores (``create``) may make a new store: one that reads names a store that
    exists, or fails, instead of answering from an empty new one."""
    with _exit_codes():
        if server:
            if not api_key:
                raise fail(
                    "no API key: set CKPTSTORE_API_KEY or pass --api-key",
                    AuthenticationFailed.exit_code,
                )
            handle: Target = Client(server, api_key)
        elif store is None:
            raise fail(
                "no store or server given: pass --store PATH or --server URL"
                " (or set CKPTSTORE_STORE or CKPTSTORE_SERVER)"
            )
        else:
            if not create and catalog is None and not (store / "catalog.sqlite").exists():
                raise fail(f"no store at {store}", NotFound.exit_code)
            handle = CheckpointStore.open(store, catalog=catalog, blocks=blocks)
        with handle:
            yield handle


@contextmanager
def local_store(
    store: Path, catalog: str | None = None, blocks: str | None = None
) -> Iterator[CheckpointStore]:
    """The embedded store, for commands that only run where its files are (``serve``,
    ``keys``: they reach into its catalog); errors become exit codes."""
    with _exit_codes(), CheckpointStore.open(store, catalog=catalog, blocks=blocks) as handle:
        yield handle


def embedded_only(handle: Target, what: str) -> CheckpointStore:
    """The embedded store; a CLI error (exit 2) if the command was pointed at a server."""
    if isinstance(handle, Client):
        raise fail(f"{what} runs where the store is: use --store DIR on the server's host")
    return handle


def checkpoint_json(record: CheckpointRecord, include_metrics: bool = True) -> dict[str, Any]:
    """The record as every command's JSON shows it: the API's camelCase names, an ISO
    time, the size in bytes and in words; no tenant."""
    data = {_camel(name): value for name, value in asdict(record).items() if name != "tenant_id"}
    data["createdAt"] = iso_time(record.created_at)
    data["size"] = human_size(record.size_bytes)
    if not include_metrics:
        data.pop("metrics")
    return data


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def emit(as_json: bool, payload: object, human: Callable[[], None]) -> None:
    if as_json:
        out.print_json(json.dumps(payload))
    else:
        human()


def progress_bar() -> Progress:
    """Bytes, MB/s and ETA on stderr; hidden when stderr is not a terminal."""
    return Progress(
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )


class CountedReader:
    """A binary reader that reports how much has been read."""

    def __init__(self, file: Readable | ReadsBytes, advance: Callable[[int], None]) -> None:
        self._readinto = readinto_of(file)
        self._advance = advance

    def readinto(self, buffer: memoryview) -> int:
        n = self._readinto(buffer) or 0
        self._advance(n)
        return n


def parse_metrics(pairs: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            metrics[key] = float(value)
        except ValueError:
            raise InvalidArgument("--metric", pair, "KEY=NUMBER, e.g. loss=0.61") from None
    return metrics
