"""gc, verify, stats; serve and keys for running a server."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ckptstore.cli.common import (
    DEFAULT_STORE,
    BlocksOpt,
    CatalogOpt,
    DataOpt,
    JsonOpt,
    KeyOpt,
    ServerOpt,
    StoreOpt,
    app,
    embedded_only,
    emit,
    err,
    fail,
    local_store,
    out,
    target,
)
from ckptstore.errors import InvalidArgument
from ckptstore.formatting import human_size, iso_time
from ckptstore.server.auth import create_api_key

# `serve` without the `server` extra installed (README: exit codes).
EXIT_SERVER_NOT_INSTALLED = 11

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the server (one tenant each).")
app.add_typer(keys_app, name="keys")


@app.command()
def gc(
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            help="Remove blocks unused for this long (this run only; default: the store's"
            " grace period, CKPTSTORE_GC_GRACE on a server; 0: at once).",
        ),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reclaim the space of deleted checkpoints and interrupted writes."""
    with target(store, server, api_key, catalog, blocks) as handle:
        report = handle.gc(grace_s=grace)
    data = report if isinstance(report, dict) else asdict(report)
    data = {_snake(k): v for k, v in data.items()}
    emit(
        as_json,
        data,
        lambda: out.print(
            f"removed {data['blocks_removed']} blocks, deleted {data['packs_deleted']} packs,"
            f" compacted {data['packs_compacted']}; freed {human_size(data['bytes_freed'])}"
            + (
                f"; stored {data['blocks_materialized']} deltas whole (their bases were deleted)"
                if data.get("blocks_materialized")
                else ""
            )
        ),
    )


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@app.command()
def verify(
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Decode and re-hash every block.")
    ] = (False),
    as_json: JsonOpt = False,
) -> None:
    """Check that every checkpoint is restorable; exit 4 if not."""
    with target(store, catalog=catalog, blocks=blocks) as handle:
        report = embedded_only(handle, "verify").verify(read_data=read_data)
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
def stats(
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Logical and stored bytes, and the dedup ratio."""
    with target(store, server, api_key, catalog, blocks) as handle:
        s = handle.stats()
    payload = {**asdict(s), "dedup_ratio": s.dedup_ratio}
    emit(
        as_json,
        payload,
        lambda: out.print(
            f"{s.checkpoints} checkpoints, {human_size(s.logical_bytes)} logical,"
            f" {human_size(s.stored_bytes)} stored ({s.dedup_ratio:.2f}x)"
            # a server shows a tenant its usage only, without the store's rebase queue
            + (
                f"; {pending} rebases pending"
                if (pending := getattr(s, "pending_rebases", 0))
                else ""
            )
        ),
    )


@app.command()
def serve(
    data: DataOpt = Path("./data"),
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    host: Annotated[str, typer.Option(envvar="CKPTSTORE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CKPTSTORE_PORT")] = 8000,
    workers: int = 1,
    log_level: str = "info",
    public_url: Annotated[str | None, typer.Option(envvar="CKPTSTORE_PUBLIC_URL")] = None,
    gc_grace: Annotated[
        float | None,
        typer.Option(
            envvar="CKPTSTORE_GC_GRACE",
            help="Seconds an unused block stays before GC may remove it (default 3600).",
        ),
    ] = None,
) -> None:
    """Run the HTTP API (packs in --data, or in --blocks' bucket; the catalog SQLite in
    --data, or --catalog's PostgreSQL). Several servers may share a PostgreSQL catalog
    and a bucket. Makes a first API key if there is none."""
    import os

    try:  # the server's packages are the `server` extra: a client install lacks them
        import fastapi  # noqa: F401
        import uvicorn
    except ModuleNotFoundError as exc:
        raise fail(
            f"serve needs the server's packages ({exc.name} is not installed):"
            " pip install 'ckptstore[server]'",
            EXIT_SERVER_NOT_INSTALLED,
        ) from None

    from ckptstore.config import ServerSettings
    from ckptstore.server.logs import log_config

    try:
        settings = ServerSettings.from_env(
            data_dir=data,
            catalog=catalog,
            blocks=blocks,
            host=host,
            port=port,
            public_url=public_url,
            gc_grace_s=gc_grace,
        )
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(InvalidArgument.exit_code) from None
    settings.resolved_signing_keys()  # made now, before several workers race to make it
    with local_store(data, settings.catalog, settings.blocks) as handle:
        records = handle.context.catalog
        if not any(key.revoked_at is None for key in records.list_api_keys()):
            # the operator's own key: an admin key, which may also run GC and read metrics
            _, key = create_api_key(records, "default", "first start", time.time(), admin=True)
            message = first_key_message(key, write_first_key(data, key))
            err.print(message, highlight=False, soft_wrap=True)
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
    os.environ["CKPTSTORE_GC_GRACE"] = str(settings.gc_grace_s)
    if settings.catalog:
        os.environ["CKPTSTORE_CATALOG"] = settings.catalog
    if settings.blocks:
        os.environ["CKPTSTORE_BLOCKS"] = settings.blocks
    # several processes add up their metrics in files of a directory of this run's own
    shared = tempfile.mkdtemp(prefix="ckptstore-metrics-") if workers > 1 else None
    if shared:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    try:
        uvicorn.run(
            "ckptstore.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=log_config(log_level),  # JSON lines unless on a terminal
            access_log=False,  # the app logs each request itself (server/access.py)
        )
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    name: str = "",
    admin: Annotated[
        bool, typer.Option(help="An operator's key: may also run GC and read /metrics.")
    ] = False,
    data: DataOpt = Path("./data"),
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    with local_store(data, catalog) as handle:
        try:
            record, key = create_api_key(
                handle.context.catalog, tenant, name, time.time(), admin=admin
            )
        except ValueError as exc:
            raise InvalidArgument("--tenant", tenant, str(exc)) from None
    emit(
        as_json,
        {"keyId": record.key_id, "tenant": tenant, "admin": admin, "key": key},
        lambda: out.print(key, highlight=False),
    )


@keys_app.command("list")
def keys_list(
    data: DataOpt = Path("./data"), catalog: CatalogOpt = None, as_json: JsonOpt = False
) -> None:
    """List keys (ids and tenants; never the keys themselves)."""
    with local_store(data, catalog) as handle:
        records = handle.context.catalog.list_api_keys()
    rows = [
        {
            "keyId": r.key_id,
            "tenant": r.tenant_id,
            "name": r.name,
            "admin": r.admin,
            "createdAt": iso_time(r.created_at),
            "revokedAt": iso_time(r.revoked_at) if r.revoked_at else None,
        }
        for r in records
    ]

    def table() -> None:
        grid = Table("key id", "tenant", "name", "admin", "created", "revoked")
        for r in records:
            grid.add_row(
                r.key_id,
                r.tenant_id,
                r.name,
                "yes" if r.admin else "",
                iso_time(r.created_at),
                iso_time(r.revoked_at) if r.revoked_at else "",
            )
        out.print(grid)

    emit(as_json, rows, table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data: DataOpt = Path("./data"), catalog: CatalogOpt = None) -> None:
    """Revoke a key by its id; requests with it get 401 from then on."""
    with local_store(data, catalog) as handle:
        if not handle.context.catalog.revoke_api_key(key_id, time.time()):
            err.print(f"[red]error:[/red] no active key with id {key_id!r}", highlight=False)
            raise typer.Exit(3)
    out.print(f"revoked {key_id}", highlight=False)


FIRST_KEY_FILE = "first-api-key"


def write_first_key(data: Path, key: str) -> Path:
    """Keep the first API key in ``<data>/first-api-key``, readable by its owner only:
    a server's output often lands in logs that others read."""
    path = data / FIRST_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    path.chmod(0o600)  # also when the file was there before with a wider mode
    return path


def first_key_message(key: str, path: Path) -> str:
    """How to authenticate: the key itself only on a terminal, else where it is kept."""
    if sys.stderr.isatty():
        return (
            f"Created an API key for tenant 'default' (also in {path}, mode 0600):\n\n"
            f"    {key}\n\nSend it as:  Authorization: Bearer {key}\n"
        )
    return (
        f"Created an API key for tenant 'default'; it is in {path} (mode 0600).\n"
        f"Send it as:  Authorization: Bearer $(cat {path})\n"
    )
