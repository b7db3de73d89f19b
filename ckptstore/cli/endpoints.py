"""endpoints deploy | ls | rm: records that pin the checkpoint a serving deployment uses."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from ckptstore.cli.common import (
    DEFAULT_STORE,
    BlocksOpt,
    CatalogOpt,
    CheckpointArg,
    JsonOpt,
    KeyOpt,
    ServerOpt,
    StoreOpt,
    app,
    emit,
    out,
    target,
)
from ckptstore.formatting import iso_time
from ckptstore.store.catalog import EndpointRecord

endpoints_app = typer.Typer(no_args_is_help=True, help="Endpoints that deploy a checkpoint.")
EndpointArg = Annotated[str, typer.Argument(metavar="ENDPOINT", help="An endpoint id.")]
app.add_typer(endpoints_app, name="endpoints")


def _json(record: EndpointRecord) -> dict[str, Any]:
    data = asdict(record)
    data.pop("tenant_id")
    data["created_at"] = iso_time(record.created_at)
    return data


@endpoints_app.command("deploy")
def deploy(
    checkpoint_id: CheckpointArg,
    name: Annotated[str, typer.Option(help="Endpoint name.")],
    gpu: Annotated[list[str] | None, typer.Option(help="GPU id, repeatable.")] = None,
    workers: int = 1,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a checkpoint; it cannot be deleted while the endpoint exists."""
    with target(store, server, api_key, catalog, blocks) as handle:
        record = handle.deploy(checkpoint_id, name=name, gpu_ids=gpu or [], worker_count=workers)
    emit(as_json, _json(record), lambda: out.print(record.endpoint_id, highlight=False))


@endpoints_app.command("set")
def update(
    endpoint_id: EndpointArg,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint", "-c", help="Re-point it to this checkpoint (id, prefix, JOB:latest...)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(help="GPU id, repeatable (replaces).")] = None,
    workers: int | None = None,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an endpoint; --checkpoint re-points it (it pins the new checkpoint and lets
    go of the old one at once)."""
    with target(store, server, api_key, catalog, blocks) as handle:
        record = handle.update_endpoint(
            endpoint_id, checkpoint_id=checkpoint, name=name, gpu_ids=gpu, worker_count=workers
        )
    emit(
        as_json,
        _json(record),
        lambda: out.print(f"{record.endpoint_id} -> {record.checkpoint_id}", highlight=False),
    )


@endpoints_app.command("ls")
def list_endpoints(
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List endpoints."""
    with target(store, server, api_key, catalog, blocks) as handle:
        records = handle.endpoints()

    def table() -> None:
        grid = Table("endpoint", "name", "checkpoint", "gpus", "workers", "created")
        for r in records:
            grid.add_row(
                r.endpoint_id,
                r.name,
                r.checkpoint_id,
                ",".join(r.gpu_ids),
                str(r.worker_count),
                iso_time(r.created_at),
            )
        out.print(grid)

    emit(as_json, [_json(r) for r in records], table)


@endpoints_app.command("rm")
def remove_endpoints(
    endpoint_ids: Annotated[list[str], typer.Argument(metavar="ENDPOINT...")],
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Delete endpoints (their checkpoints may then be deleted)."""
    with target(store, server, api_key, catalog, blocks) as handle:
        for endpoint_id in endpoint_ids:
            handle.undeploy(endpoint_id)
            out.print(f"deleted {endpoint_id}", highlight=False)
