"""API representations of engine records, field for field as the seed shows them."""

from __future__ import annotations

from ckptstore.formatting import human_size, iso_time
from ckptstore.server.signing import UrlSigner
from ckptstore.store.catalog.base import CheckpointRecord, EndpointRecord, FileRecord


def checkpoint_view(
    record: CheckpointRecord, signer: UrlSigner, include_metrics: bool = True, signed: bool = True
) -> dict[str, object]:
    """The seed's checkpoint object, and our extra fields after it; ``signed=False``
    leaves the download URL out (for a deleted checkpoint)."""
    ready = record.status == "ready"
    url = signer.sign(record.tenant_id, record.checkpoint_id) if ready and signed else None
    view: dict[str, object] = {
        "checkpointId": record.checkpoint_id,
        "name": record.name,
        "epoch": record.epoch,
        "step": record.step,
        "metrics": record.metrics,
        "size": human_size(record.size_bytes),
        "type": record.type,
        "downloadUrl": url.url if url else None,
        "deployable": ready,
        "createdAt": iso_time(record.created_at),
        "jobId": record.job_id,
        "description": record.description,
        "status": record.status,
        "sizeBytes": record.size_bytes,
        "storedBytes": record.stored_bytes,
        "downloadUrlExpiresAt": iso_time(url.expires_at) if url else None,
        "parentId": record.parent_id,  # a best checkpoint: the checkpoint it copies
        # "file", or "tree": a folder, whose downloadUrl gives a tar of its files
        "layout": record.layout,
        # of the file's bytes; of a tree, of its sha256sum listing (FORMAT.md)
        "sha256": record.sha256,
    }
    if not include_metrics:
        del view["metrics"]  # the others keep their order
    return view


def file_view(record: CheckpointRecord, file: FileRecord, signer: UrlSigner) -> dict[str, object]:
    """One file of a checkpoint, with a signed URL of its own bytes."""
    url = signer.sign(record.tenant_id, record.checkpoint_id, file.path)
    return {
        "path": file.path,
        "sizeBytes": file.size_bytes,
        "mode": file.mode,
        "sha256": file.sha256,
        "downloadUrl": url.url,
        "downloadUrlExpiresAt": iso_time(url.expires_at),
    }


def best_summary(record: CheckpointRecord | None) -> dict[str, object] | None:
    """The seed shows the best checkpoint's validation metrics; all metrics if it has none."""
    if record is None:
        return None
    validation = {k: v for k, v in record.metrics.items() if k.startswith("validation")}
    return {"checkpointId": record.checkpoint_id, "metrics": validation or record.metrics}


def latest_summary(record: CheckpointRecord | None) -> dict[str, object] | None:
    if record is None:
        return None
    return {"checkpointId": record.checkpoint_id, "createdAt": iso_time(record.created_at)}


def endpoint_view(record: EndpointRecord, base_url: str, signer: UrlSigner) -> dict[str, object]:
    signed = signer.sign(record.tenant_id, record.checkpoint_id)
    return {
        "id": record.endpoint_id,
        "name": record.name,
        "url": f"{base_url}/v2/endpoints/{record.endpoint_id}",
        "status": record.status,
        "checkpointId": record.checkpoint_id,
        "gpuIds": record.gpu_ids,
        "workerCount": record.worker_count,
        "createdAt": iso_time(record.created_at),
        "downloadUrl": signed.url,
        "downloadUrlExpiresAt": iso_time(signed.expires_at),
    }
