"""push, pull, ls, show, rm, jobs, url: checkpoints on a store or a server."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from ckptstore.cli.common import (
    DEFAULT_STORE,
    REFERENCE_HELP,
    BlocksOpt,
    CatalogOpt,
    CheckpointArg,
    CountedReader,
    JsonOpt,
    KeyOpt,
    ServerOpt,
    StoreOpt,
    Target,
    app,
    checkpoint_json,
    emit,
    fail,
    out,
    parse_metrics,
    progress_bar,
    target,
)
from ckptstore.client import Client
from ckptstore.formatting import human_size, iso_time
from ckptstore.store.catalog import CheckpointRecord
from ckptstore.store.checkpoints import CheckpointStore
from ckptstore.store.drafts import CheckpointFields
from ckptstore.store.policies import JobSettings
from ckptstore.store.restore import SeekableReader


@app.command()
def push(
    file: Annotated[
        Path, typer.Argument(help="Checkpoint file or folder, or - for standard input.")
    ],
    job: Annotated[str, typer.Option("--job", "-j", help="Training job id.")],
    type_: Annotated[str, typer.Option("--type", help="automatic, best, manual or final.")] = (
        "automatic"
    ),
    epoch: int | None = None,
    step: int | None = None,
    metric: Annotated[list[str] | None, typer.Option(help="KEY=NUMBER, repeatable.")] = None,
    name: str | None = None,
    description: str | None = None,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a checkpoint file or folder (on a server, sending only the blocks it lacks)."""
    with target(store, server, api_key, catalog, blocks, create=True) as handle:
        fields: CheckpointFields = {
            "type": type_,
            "epoch": epoch,
            "step": step,
            "metrics": parse_metrics(metric or []),
            "name": name,
            "description": description,
        }
        stdin = str(file) == "-"
        if not stdin and file.is_dir():
            record = handle.put(job, file, **fields)
        elif not stdin and isinstance(handle, Client):
            # by its path: the client notes it, to send the next save as deltas on it
            with progress_bar() as bar:
                task = bar.add_task("push", total=file.stat().st_size)
                record = handle.put(job, file, progress=lambda n: bar.advance(task, n), **fields)
        else:
            with progress_bar() as bar, sys.stdin.buffer if stdin else open(file, "rb") as raw:
                task = bar.add_task("push", total=None if stdin else file.stat().st_size)
                source = CountedReader(raw, lambda n: bar.advance(task, n))
                name = None if stdin else file.name
                record = handle.put(job, source, file_name=name, **fields)
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
    checkpoint_id: CheckpointArg,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File or folder, or - for stdout (a folder as tar)."),
    ] = (None),
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Fetch a checkpoint: a file under its own name, a folder checkpoint into the
    folder ID (its full id), unless -o is given.

    From a server, the blocks come as stored (compressed) and each is checked
    against its id; an interrupted pull resumes where it stopped."""
    with target(store, server, api_key, catalog, blocks) as handle, progress_bar() as bar:
        task = bar.add_task("pull", total=None)

        def advance(n: int) -> None:
            bar.advance(task, n)

        # a reference (prefix, JOB:latest) is resolved once: the whole pull is of the
        # checkpoint it named when the pull began
        record = handle.get(checkpoint_id)
        if str(output) == "-":
            _to_stdout(handle, record, advance)
            return
        if output is not None:
            dest = output
        elif record.layout == "tree":
            dest = Path(record.checkpoint_id)
        else:
            dest = Path(handle.files(record.checkpoint_id)[0].path)
        bar.update(task, total=record.size_bytes)
        handle.restore(record.checkpoint_id, dest, progress=advance)


def _to_stdout(handle: Target, record: CheckpointRecord, advance: Callable[[int], None]) -> None:
    """A file's bytes, or a folder checkpoint as a tar archive, on standard output."""
    if record.layout == "tree":
        if not isinstance(handle, CheckpointStore):
            with handle.open_archive(record.checkpoint_id) as reader:
                _copy_out(reader, advance)
            return
        with handle.open_archive(record.checkpoint_id) as archive:
            for view in archive.iter_range():
                sys.stdout.buffer.write(view)
                advance(len(view))
        return
    with handle.open_reader(record.checkpoint_id) as reader:
        _copy_out(reader, advance)


def _copy_out(reader: SeekableReader, advance: Callable[[int], None]) -> None:
    while chunk := reader.read(4 << 20):
        sys.stdout.buffer.write(chunk)
        advance(len(chunk))


@app.command("ls-files")
def list_files(
    checkpoint_id: str,
    sha256sum: Annotated[
        bool,
        typer.Option(
            "--sha256sum", help="Lines as sha256sum prints them (for sha256sum -c in the folder)."
        ),
    ] = False,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a checkpoint's files: mode, size, SHA-256 and path."""
    with target(store, server, api_key, catalog, blocks) as handle:
        files = handle.files(checkpoint_id)

    def lines() -> None:
        for f in files:
            digest = f.sha256 or "-" * 64
            if sha256sum:
                out.print(f"{digest}  {f.path}", highlight=False, soft_wrap=True)
            else:
                line = f"{f.mode:04o} {f.size_bytes:>14} {digest}  {f.path}"
                out.print(line, highlight=False, soft_wrap=True)

    payload = [
        {"path": f.path, "sizeBytes": f.size_bytes, "mode": f.mode, "sha256": f.sha256}
        for f in files
    ]
    emit(as_json, {"files": payload}, lines)


@app.command("ls")
def list_checkpoints(
    job: str,
    sort_by: Annotated[str, typer.Option("--sort-by")] = "createdAt",
    order: str = "desc",
    limit: int = 50,
    all_: Annotated[bool, typer.Option("--all", help="Every checkpoint, not a page.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Checkpoint ids only.")] = False,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="Only this type (repeatable).")
    ] = None,
    no_metrics: Annotated[bool, typer.Option("--no-metrics")] = False,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a job's checkpoints (a page of --limit, or --all)."""
    with target(store, server, api_key, catalog, blocks) as handle:
        page = handle.list(
            job,
            sort_by=sort_by,
            order=order,
            limit=None if all_ else limit,
            types=tuple(type_) if type_ else None,
        )

    def table() -> None:
        if quiet:  # ids only, one per line, for scripts
            for r in page.checkpoints:
                out.print(r.checkpoint_id, highlight=False, soft_wrap=True)
            return
        # ids are never cut short: they are what the other commands take
        checkpoint = Column("checkpoint", no_wrap=True, overflow="fold")
        grid = Table(checkpoint, "type", "status", "name", "epoch", "step", "size", "created")
        if not no_metrics:
            grid.add_column("metrics")
        for r in page.checkpoints:
            row = [
                r.checkpoint_id,
                r.type,
                r.status,
                r.name,
                _text(r.epoch),
                _text(r.step),
                human_size(r.size_bytes),
                iso_time(r.created_at),
            ]
            if not no_metrics:
                row.append(" ".join(f"{k}={v:g}" for k, v in r.metrics.items()))
            grid.add_row(*row)
        out.print(grid)
        out.print(f"{len(page.checkpoints)} of {page.total_count} checkpoints")

    payload = {
        "checkpoints": [checkpoint_json(r, not no_metrics) for r in page.checkpoints],
        "totalCount": page.total_count,
    }
    emit(as_json, payload, table)


def _text(value: object) -> str:
    return "" if value is None else str(value)


@app.command()
def show(
    checkpoint_id: CheckpointArg,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one checkpoint."""
    with target(store, server, api_key, catalog, blocks) as handle:
        data = checkpoint_json(handle.get(checkpoint_id))

    def lines() -> None:
        for key, value in data.items():
            shown = json.dumps(value) if isinstance(value, dict | list) else _text(value)
            out.print(f"{key}: {shown}", highlight=False)

    emit(as_json, data, lines)


@app.command()
def rm(
    checkpoint_ids: Annotated[
        list[str], typer.Argument(metavar="CHECKPOINT...", help=REFERENCE_HELP)
    ],
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete checkpoints (their space returns at a GC after the grace period)."""
    deleted = []
    with target(store, server, api_key, catalog, blocks) as handle:
        for checkpoint_id in checkpoint_ids:
            record = handle.delete(checkpoint_id)
            deleted.append(checkpoint_json(record))
            if not as_json:
                out.print(f"deleted {record.checkpoint_id}", highlight=False)
    if as_json:
        emit(as_json, {"deleted": deleted}, lambda: None)


@app.command()
def jobs(
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List job ids."""
    with target(store, server, api_key, catalog, blocks) as handle:
        names = handle.jobs()

    def lines() -> None:
        for name in names:
            out.print(name, highlight=False)

    emit(as_json, names, lines)


@app.command()
def url(
    checkpoint_id: CheckpointArg,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a signed download URL (valid one hour, no key needed to use it)."""
    if not server:
        raise fail("url needs --server (or CKPTSTORE_SERVER): signed URLs come from a server")
    with target(DEFAULT_STORE, server, api_key) as handle:
        assert isinstance(handle, Client)
        resolved = handle.resolve(checkpoint_id)
        signed = handle.download_url(resolved)
    emit(
        as_json,
        {"checkpointId": resolved, "downloadUrl": signed},
        lambda: out.print(signed, highlight=False, soft_wrap=True),
    )


settings_app = typer.Typer(
    help="A job's settings: best metric and mode, automatic checkpoints kept."
)
app.add_typer(settings_app, name="settings")


@settings_app.command("show")
def settings_show(
    job: str,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a job's settings."""
    with target(store, server, api_key, catalog, blocks) as handle:
        shown = handle.job_settings(job).as_dict()
    emit(as_json, shown, lambda: _print_settings(shown))


@settings_app.command("set")
def settings_set(
    job: str,
    best_metric: Annotated[str | None, typer.Option(help="The metric that picks the best.")] = None,
    best_mode: Annotated[str | None, typer.Option(help="min or max.")] = None,
    keep_automatic: Annotated[
        int | None, typer.Option(help="Automatic checkpoints to keep (0: all).")
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    catalog: CatalogOpt = None,
    blocks: BlocksOpt = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a job's settings; those not given keep their value."""
    with target(store, server, api_key, catalog, blocks, create=True) as handle:
        current = handle.job_settings(job).as_dict()
        if best_metric is not None:
            current["bestMetric"] = best_metric
            current["bestMode"] = best_mode  # the new metric's own default unless given
        if best_mode is not None:
            current["bestMode"] = best_mode
        if keep_automatic is not None:
            current["keepAutomatic"] = keep_automatic or None
        shown = handle.set_job_settings(job, JobSettings.from_dict(current)).as_dict()
    emit(as_json, shown, lambda: _print_settings(shown))


def _print_settings(settings: dict[str, object]) -> None:
    for key, value in settings.items():
        out.print(f"{key}: {_text(value) or 'all'}", highlight=False)
