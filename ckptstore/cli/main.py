"""``ckptstore``: push, pull, list and maintain checkpoints in an embedded store.

Every command takes ``--store PATH`` (or ``CKPTSTORE_STORE``) and ``--json``.
A user mistake prints one line on stderr and exits with the error class's
``exit_code``, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ckptstore.errors import CkptStoreError, InvalidArgument
from ckptstore.formatting import human_size, iso_time
from ckptstore.server.auth import create_api_key
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.checkpoints import CheckpointStore

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n")[0])
out = Console()
err = Console(stderr=True)

StoreOpt = Annotated[
    Path, typer.Option("--store", envvar="CKPTSTORE_STORE", help="Store directory.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def opened(store: Path) -> Iterator[CheckpointStore]:
    """The store, with ckptstore errors turned into one stderr line and an exit code."""
    try:
        with CheckpointStore.open(store) as handle:
            yield handle
    except CkptStoreError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] {exc.strerror or exc}: {exc.filename or ''}", highlight=False)
        raise typer.Exit(1) from None


def checkpoint_json(record: CheckpointRecord) -> dict:
    data = asdict(record)
    data["created_at"] = iso_time(record.created_at)
    data["size"] = human_size(record.size_bytes)
    return data


def emit(as_json: bool, payload: object, human: Callable[[], None]) -> None:
    if as_json:
        out.print_json(json.dumps(payload))
    else:
        human()


def progress_bar(total: int | None) -> Progress:
    return Progress(
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )


class _Counted:
    """A binary reader that advances a progress bar as it is read."""

    def __init__(self, file: BinaryIO, advance: Callable[[int], None]) -> None:
        self._file = file
        self._advance = advance

    def readinto(self, buffer: memoryview) -> int:
        n = self._file.readinto(buffer)
        self._advance(n or 0)
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


@app.command()
def push(
    file: Annotated[Path, typer.Argument(help="Checkpoint file, or - for standard input.")],
    job: Annotated[str, typer.Option("--job", "-j", help="Training job id.")],
    store: StoreOpt = Path("./ckpts"),
    type_: Annotated[str, typer.Option("--type")] = "automatic",
    epoch: int | None = None,
    step: int | None = None,
    metric: Annotated[list[str] | None, typer.Option(help="KEY=NUMBER, repeatable.")] = None,
    name: str | None = None,
    description: str | None = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a checkpoint file."""
    with opened(store) as handle:
        metrics = parse_metrics(metric or [])
        if str(file) == "-":
            source: BinaryIO | _Counted = sys.stdin.buffer
            total = None
        else:
            source_file = open(file, "rb")  # noqa: SIM115 - closed below
            total = file.stat().st_size
        with progress_bar(total) as bar:
            task = bar.add_task("push", total=total)
            if str(file) != "-":
                source = _Counted(source_file, lambda n: bar.advance(task, n))
            try:
                record = handle.put(
                    job,
                    source,
                    type=type_,
                    epoch=epoch,
                    step=step,
                    metrics=metrics,
                    name=name,
                    description=description,
                )
            finally:
                if str(file) != "-":
                    source_file.close()
        emit(
            as_json,
            checkpoint_json(record),
            lambda: out.print(
                f"{record.checkpoint_id}  {human_size(record.size_bytes)},"
                f" {human_size(record.stored_bytes)} new",
                highlight=False,
            ),
        )


@app.command()
def pull(
    checkpoint_id: str,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File, or - for stdout.")
    ] = None,
    store: StoreOpt = Path("./ckpts"),
) -> None:
    """Restore a checkpoint's bytes (to CHECKPOINT_ID.bin unless -o is given)."""
    with opened(store) as handle:
        reader = handle.open_reader(checkpoint_id)
        target = output or Path(f"{checkpoint_id}.bin")
        with reader, progress_bar(reader.size) as bar:
            task = bar.add_task("pull", total=reader.size)
            sink = sys.stdout.buffer if str(target) == "-" else open(target, "wb")  # noqa: SIM115
            try:
                for view in reader.iter_range():
                    sink.write(view)
                    bar.advance(task, len(view))
            finally:
                if sink is not sys.stdout.buffer:
                    sink.close()


@app.command("ls")
def list_checkpoints(
    job: str,
    store: StoreOpt = Path("./ckpts"),
    sort_by: Annotated[str, typer.Option("--sort-by")] = "createdAt",
    order: str = "desc",
    limit: int = 50,
    no_metrics: Annotated[bool, typer.Option("--no-metrics")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List a job's checkpoints."""
    with opened(store) as handle:
        page = handle.list(job, sort_by=sort_by, order=order, limit=limit)

    def table() -> None:
        grid = Table("checkpoint", "type", "name", "epoch", "step", "size", "created")
        if not no_metrics:
            grid.add_column("metrics")
        for r in page.checkpoints:
            row = [
                r.checkpoint_id,
                r.type,
                r.name,
                str(r.epoch or ""),
                str(r.step or ""),
                human_size(r.size_bytes),
                iso_time(r.created_at),
            ]
            if not no_metrics:
                row.append(" ".join(f"{k}={v:g}" for k, v in r.metrics.items()))
            grid.add_row(*row)
        out.print(grid)
        out.print(f"{len(page.checkpoints)} of {page.total_count} checkpoints")

    payload = {
        "checkpoints": [checkpoint_json(r) for r in page.checkpoints],
        "totalCount": page.total_count,
    }
    if no_metrics:
        for item in payload["checkpoints"]:
            item.pop("metrics")
    emit(as_json, payload, table)


@app.command()
def show(checkpoint_id: str, store: StoreOpt = Path("./ckpts"), as_json: JsonOpt = False) -> None:
    """Show one checkpoint."""
    with opened(store) as handle:
        record = handle.get(checkpoint_id)
    data = checkpoint_json(record)
    emit(as_json, data, lambda: [out.print(f"{k}: {v}", highlight=False) for k, v in data.items()])


@app.command()
def rm(checkpoint_ids: list[str], store: StoreOpt = Path("./ckpts")) -> None:
    """Delete checkpoints (their space returns at the next gc after the grace period)."""
    with opened(store) as handle:
        for checkpoint_id in checkpoint_ids:
            handle.delete(checkpoint_id)
            out.print(f"deleted {checkpoint_id}", highlight=False)


@app.command()
def jobs(store: StoreOpt = Path("./ckpts"), as_json: JsonOpt = False) -> None:
    """List job ids."""
    with opened(store) as handle:
        names = handle.jobs()
    emit(as_json, names, lambda: [out.print(name, highlight=False) for name in names])


@app.command()
def gc(store: StoreOpt = Path("./ckpts"), as_json: JsonOpt = False) -> None:
    """Reclaim space of deleted checkpoints and crashed writes."""
    with opened(store) as handle:
        report = handle.gc()
    emit(
        as_json,
        asdict(report),
        lambda: out.print(
            f"removed {report.blocks_removed} blocks, deleted {report.packs_deleted} packs,"
            f" compacted {report.packs_compacted}; freed {human_size(report.bytes_freed)}"
        ),
    )


@app.command()
def verify(
    store: StoreOpt = Path("./ckpts"),
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Decode and re-hash every block.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check that every checkpoint is restorable; exit 4 if not."""
    with opened(store) as handle:
        report = handle.verify(read_data=read_data)
    payload = {
        "ok": report.ok,
        "checkpoints": report.checkpoints,
        "blocksChecked": report.blocks_checked,
        "findings": [asdict(f) for f in report.findings],
        "affectedCheckpoints": report.affected_checkpoints,
    }

    def human() -> None:
        for f in report.findings:
            err.print(
                f"{f.kind}: block {f.block_id} pack {f.pack_id}: {f.detail};"
                f" affects {', '.join(f.checkpoints) or 'no checkpoint'}",
                highlight=False,
            )
        out.print(
            f"{'ok' if report.ok else 'DAMAGED'}: {report.checkpoints} checkpoints,"
            f" {report.blocks_checked} blocks re-hashed, {len(report.findings)} findings"
        )

    emit(as_json, payload, human)
    if not report.ok:
        raise typer.Exit(4)


@app.command()
def stats(store: StoreOpt = Path("./ckpts"), as_json: JsonOpt = False) -> None:
    """Logical and stored bytes, and the dedup ratio."""
    with opened(store) as handle:
        s = handle.stats()
    payload = {**asdict(s), "dedup_ratio": s.dedup_ratio}
    emit(
        as_json,
        payload,
        lambda: out.print(
            f"{s.checkpoints} checkpoints, {human_size(s.logical_bytes)} logical,"
            f" {human_size(s.stored_bytes)} stored ({s.dedup_ratio:.2f}x), {s.blocks} blocks"
            f" in {s.packs} packs"
        ),
    )


DataOpt = Annotated[
    Path, typer.Option("--data", envvar="CKPTSTORE_DATA", help="The server's store directory.")
]
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the server (one tenant each).")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    data: DataOpt = Path("./data"),
    host: Annotated[str, typer.Option(envvar="CKPTSTORE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CKPTSTORE_PORT")] = 8000,
    workers: int = 1,
    log_level: str = "info",
    public_url: Annotated[str | None, typer.Option(envvar="CKPTSTORE_PUBLIC_URL")] = None,
) -> None:
    """Run the HTTP API (SQLite + packs in --data). Makes a first API key if there is none."""
    import os

    import uvicorn

    from ckptstore.config import ServerSettings

    settings = ServerSettings.from_env(data_dir=data, host=host, port=port, public_url=public_url)
    settings.resolved_signing_keys()  # made now, before several workers race to make it
    with opened(data) as handle:
        catalog = handle.context.catalog
        if not any(key.revoked_at is None for key in catalog.list_api_keys()):
            _, key = create_api_key(catalog, "default", "first start", time.time())
            err.print(
                f"Created an API key for tenant 'default' (shown once, stored hashed):\n\n"
                f"    {key}\n\nSend it as:  Authorization: Bearer {key}\n",
                highlight=False,
                soft_wrap=True,
            )
        else:
            err.print(
                f"Authenticate with 'Authorization: Bearer <key>'. New keys:"
                f" ckptstore keys create --tenant NAME --data {data}",
                highlight=False,
            )
    err.print(f"Serving {settings.base_url}  (API docs: {settings.base_url}/docs)", highlight=False)
    os.environ.update(
        {"CKPTSTORE_DATA": str(data), "CKPTSTORE_HOST": host, "CKPTSTORE_PORT": str(port)}
    )
    if public_url:
        os.environ["CKPTSTORE_PUBLIC_URL"] = public_url
    uvicorn.run(
        "ckptstore.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    name: str = "",
    data: DataOpt = Path("./data"),
    as_json: JsonOpt = False,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    with opened(data) as handle:
        try:
            record, key = create_api_key(handle.context.catalog, tenant, name, time.time())
        except ValueError as exc:
            raise InvalidArgument("--tenant", tenant, str(exc)) from None
    emit(
        as_json,
        {"keyId": record.key_id, "tenant": tenant, "key": key},
        lambda: out.print(key, highlight=False),
    )


@keys_app.command("list")
def keys_list(data: DataOpt = Path("./data"), as_json: JsonOpt = False) -> None:
    """List keys (ids and tenants; never the keys themselves)."""
    with opened(data) as handle:
        records = handle.context.catalog.list_api_keys()
    rows = [
        {
            "keyId": r.key_id,
            "tenant": r.tenant_id,
            "name": r.name,
            "createdAt": iso_time(r.created_at),
            "revokedAt": iso_time(r.revoked_at) if r.revoked_at else None,
        }
        for r in records
    ]

    def table() -> None:
        grid = Table("key id", "tenant", "name", "created", "revoked")
        for row in rows:
            grid.add_row(
                row["keyId"], row["tenant"], row["name"], row["createdAt"], row["revokedAt"] or ""
            )
        out.print(grid)

    emit(as_json, rows, table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data: DataOpt = Path("./data")) -> None:
    """Revoke a key by its id; requests with it get 401 from then on."""
    with opened(data) as handle:
        if not handle.context.catalog.revoke_api_key(key_id, time.time()):
            err.print(f"[red]error:[/red] no active key with id {key_id!r}", highlight=False)
            raise typer.Exit(3)
    out.print(f"revoked {key_id}", highlight=False)


def main() -> None:
    app()
