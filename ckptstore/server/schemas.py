"""Request bodies, and response models for the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from ckptstore.store.catalog import CHECKPOINT_TYPES
from ckptstore.store.files import MAX_PATH_BYTES

CheckpointType = Literal["automatic", "best", "manual", "final"]

MAX_COUNTER = 2**63 - 1  # epochs and steps are stored as signed 64-bit integers
MAX_METRICS = 256  # metric names per checkpoint
MAX_KEEP = 1_000_000  # automatic checkpoints a job may keep
# Block ids in one request: a checkpoint of a million blocks (a TiB in blocks of a
# MiB) fits within ServerSettings.max_json_body_bytes.
MAX_BLOCK_IDS = 1_000_000
# Ids as the store checks them (store/ids.py); generated checkpoint ids are "ckpt_" and
# 20 hex digits, endpoint ids "ep_" and 16. Documented, and checked by the store, so
# that a bad one is answered with the store's own error class.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
CHECKPOINT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# an id, a unique prefix of one (8 or more characters), or JOB:latest|best|final
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(:(latest|best|final))?$"
ENDPOINT_ID_PATTERN = r"^ep_[0-9a-f]{16}$"
EXAMPLE_JOB = "job_train_abc123"
EXAMPLE_ID = "ckpt_284203a6e1f09b7c5d42"
EXAMPLE_PARENT = "ckpt_9c1e07d2b34a58f6e0a1"
EXAMPLE_ENDPOINT = "ep_5f0c2a9d8e7b6a41"
EXAMPLE_BLOCK = "3b7e" + "0" * 56 + "a1f9"
EXAMPLE_URL = f"http://127.0.0.1:8000/signed/{EXAMPLE_ID}?expires=1765036800&signature=Zm9vYmFy"
EXAMPLE_FILE_URL = (
    f"http://127.0.0.1:8000/signed/{EXAMPLE_ID}/files/model-00001-of-00004.safetensors"
    "?expires=1765036800&signature=YmFyYmF6"
)
EXAMPLE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _doc(pattern: str, description: str, example: str) -> JsonDict:
    """Schema keywords that document an id (the store checks it)."""
    return {"pattern": pattern, "description": description, "examples": [example]}


# Names and descriptions are shown in listings and the web page: no control characters.
PrintableText = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]


class CreateCheckpoint(BaseModel):
    """A manual checkpoint request (name, description), or a trainer registering its own.

    type, epoch and step are checked by the store, so a bad one is answered with the
    store's own error class (``InvalidCheckpointType``, ``InvalidArgument``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "before LR change", "description": "manual save"},
                {"type": "automatic", "epoch": 3, "step": 1200, "metrics": {"loss": 0.61}},
            ]
        },
    )
    name: PrintableText | None = Field(None, min_length=1, max_length=256)
    description: str | None = Field(None, max_length=4096)
    type: str = Field("manual", json_schema_extra={"enum": list(CHECKPOINT_TYPES)})
    epoch: int | None = Field(None, le=MAX_COUNTER, json_schema_extra={"minimum": 0})
    step: int | None = Field(None, le=MAX_COUNTER, json_schema_extra={"minimum": 0})
    metrics: dict[str, float] | None = Field(None, max_length=MAX_METRICS)


# A checkpoint reference (store/refs.py): an id, a unique prefix of one, or JOB:ALIAS.
MAX_REFERENCE_CHARS = 128 + len(":latest")


REFERENCE_DOC = _doc(
    REFERENCE_PATTERN,
    "A checkpoint id, a unique prefix of one (8 characters or more), or JOB:latest,"
    " JOB:best, JOB:final; the endpoint pins the checkpoint it names now, by its id.",
    f"{EXAMPLE_JOB}:best",
)


class DeployEndpoint(BaseModel):
    """An endpoint: a name unique among the caller's endpoints, and the checkpoint it pins."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "serving-prod",
                    "checkpointId": f"{EXAMPLE_JOB}:best",
                    "gpuIds": ["0", "1"],
                    "workerCount": 2,
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=256)
    checkpointId: str = Field(  # noqa: N815
        min_length=1, max_length=MAX_REFERENCE_CHARS, json_schema_extra=REFERENCE_DOC
    )
    gpuIds: list[str] = Field(default_factory=list, max_length=64)  # noqa: N815
    workerCount: int = Field(1, ge=1, le=1000)  # noqa: N815


class UpdateEndpoint(BaseModel):
    """``PATCH /v2/endpoints/{id}``: the fields to change; a new ``checkpointId`` re-points
    the endpoint (it pins that checkpoint and lets go of the old one at once)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"checkpointId": f"{EXAMPLE_JOB}:latest"}]},
    )
    name: str | None = Field(None, min_length=1, max_length=256)
    checkpointId: str | None = Field(  # noqa: N815
        None, min_length=1, max_length=MAX_REFERENCE_CHARS, json_schema_extra=REFERENCE_DOC
    )
    gpuIds: list[str] | None = Field(None, max_length=64)  # noqa: N815
    workerCount: int | None = Field(None, ge=1, le=1000)  # noqa: N815


class BlockIds(BaseModel):
    """Block ids, 64 hex characters each, in checkpoint order (for missing)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"blockIds": [EXAMPLE_BLOCK]}]}
    )
    blockIds: list[Annotated[str, Field(json_schema_extra={"pattern": "^[0-9a-f]{64}$"})]] = Field(  # noqa: N815
        max_length=MAX_BLOCK_IDS
    )


# "<tensor name>#<index>", after "<file path>:" in a folder; longer are not tensor names
MAX_SLOT_CHARS = 1024 + MAX_PATH_BYTES
MAX_PATH_CHARS = MAX_PATH_BYTES  # of a file of a folder checkpoint
MAX_FILES = 100_000  # files of one folder checkpoint


class UploadedFile(BaseModel):
    """A file of an uploaded checkpoint: its relative path, size and permission bits."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"path": "model.safetensors", "sizeBytes": 1048576, "mode": 0o644}]
        },
    )
    path: str = Field(max_length=MAX_PATH_CHARS)
    sizeBytes: int = Field(ge=0)  # noqa: N815
    mode: int = Field(0o644, ge=0, le=0o777)


class CommitBody(BlockIds):
    """The checkpoint's block ids in order, and optionally each block's tensor slot
    (``"<tensor>#<index>"`` or null), so the job's previous checkpoint can be stored as
    deltas on this one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"blockIds": [EXAMPLE_BLOCK], "slots": ["model.layers.0.weight#0"], "step": 1200}
            ]
        }
    )
    slots: list[Annotated[str, Field(max_length=MAX_SLOT_CHARS)] | None] | None = Field(
        default=None, max_length=MAX_BLOCK_IDS
    )
    # extension: where training was, for a checkpoint requested before its data existed
    epoch: int | None = Field(None, ge=0, le=MAX_COUNTER)
    step: int | None = Field(None, ge=0, le=MAX_COUNTER)
    metrics: dict[str, float] | None = Field(None, max_length=MAX_METRICS)
    # extension: the checkpoint's files in checkpoint order (sorted paths), each
    # starting at a block edge; "tree" for a folder. Without files: one file of the
    # default name, <checkpointId>.ckpt
    files: list[UploadedFile] | None = Field(None, max_length=MAX_FILES)
    layout: Literal["file", "tree"] = "file"


class JobSettingsBody(BaseModel):
    """Which metric picks the job's best checkpoint, and how many automatic ones to keep
    (null: all)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"bestMetric": "validationLoss", "bestMode": "min", "keepAutomatic": 5}]
        },
    )
    bestMetric: str = Field("validationLoss", min_length=1, max_length=128)  # noqa: N815
    bestMode: Literal["min", "max"] | None = None  # noqa: N815
    keepAutomatic: int | None = Field(None, ge=1, le=MAX_KEEP)  # noqa: N815


CHECKPOINT_EXAMPLE: JsonDict = {
    "checkpointId": EXAMPLE_ID,
    "name": "Epoch 3 Checkpoint",
    "epoch": 3,
    "step": 1200,
    "metrics": {"loss": 0.61, "validationLoss": 0.7},
    "size": "2.3GB",
    "type": "automatic",
    "downloadUrl": EXAMPLE_URL,
    "deployable": True,
    "createdAt": "2026-12-06T14:00:00Z",
    "jobId": EXAMPLE_JOB,
    "description": "saved every 400 steps",
    "status": "ready",
    "sizeBytes": 2_300_000_000,
    "storedBytes": 120_000_000,
    "downloadUrlExpiresAt": "2026-12-06T15:00:00Z",
    "parentId": None,
    "layout": "file",
    "sha256": EXAMPLE_SHA256,
}


class Checkpoint(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [CHECKPOINT_EXAMPLE]})
    checkpointId: str = Field(  # noqa: N815
        json_schema_extra=_doc(
            CHECKPOINT_ID_PATTERN, "Generated ids are ckpt_ and 20 hex digits.", EXAMPLE_ID
        )
    )
    name: str
    epoch: int | None
    step: int | None
    metrics: dict[str, float] | None = None
    size: str
    type: CheckpointType
    downloadUrl: str | None  # noqa: N815
    deployable: bool
    createdAt: str  # noqa: N815
    jobId: str = Field(json_schema_extra={"pattern": JOB_ID_PATTERN})  # noqa: N815
    description: str | None
    status: Literal["pending", "ready"]
    sizeBytes: int  # noqa: N815
    storedBytes: int  # noqa: N815
    downloadUrlExpiresAt: str | None  # noqa: N815
    parentId: str | None = None  # noqa: N815 - a best checkpoint: the checkpoint it copies
    layout: Literal["file", "tree"] = "file"  # a tree's downloadUrl gives a tar
    sha256: str | None = None  # of the file; of a tree, of its sha256sum listing


FILE_EXAMPLE: JsonDict = {
    "path": "model-00001-of-00004.safetensors",
    "sizeBytes": 4_976_698_672,
    "mode": 0o644,
    "sha256": EXAMPLE_SHA256,
    "downloadUrl": EXAMPLE_FILE_URL,
    "downloadUrlExpiresAt": "2026-12-06T15:00:00Z",
}


class CheckpointFile(BaseModel):
    """``GET .../checkpoints/{id}/files``: one file, with a signed URL of its bytes."""

    model_config = ConfigDict(json_schema_extra={"examples": [FILE_EXAMPLE]})

    path: str
    sizeBytes: int  # noqa: N815
    mode: int
    sha256: str | None  # None until the server has read an uploaded file back
    downloadUrl: str  # noqa: N815
    downloadUrlExpiresAt: str  # noqa: N815


class CheckpointFiles(BaseModel):
    """A checkpoint's files in order (one, or a folder's): ``sha256`` is the
    checkpoint's (of a folder, of its sha256sum listing)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"layout": "tree", "sha256": EXAMPLE_SHA256, "files": [FILE_EXAMPLE]}]
        }
    )
    layout: Literal["file", "tree"]
    sha256: str | None
    files: list[CheckpointFile]


class JobSummary(BaseModel):
    """``GET /v2/training/jobs/{jobId}/summary``: whole checkpoint objects, exact size."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bestCheckpoint": {
                        **CHECKPOINT_EXAMPLE,
                        "type": "best",
                        "parentId": EXAMPLE_PARENT,
                        "storedBytes": 0,
                    },
                    "latestCheckpoint": CHECKPOINT_EXAMPLE,
                    "totalCount": 12,
                    "totalSizeBytes": 27_600_000_000,
                }
            ]
        }
    )

    bestCheckpoint: Checkpoint | None  # noqa: N815
    latestCheckpoint: Checkpoint | None  # noqa: N815
    totalCount: int  # noqa: N815
    totalSizeBytes: int  # noqa: N815


class BestSummary(BaseModel):
    checkpointId: str  # noqa: N815
    metrics: dict[str, float]


class LatestSummary(BaseModel):
    checkpointId: str  # noqa: N815
    createdAt: str  # noqa: N815


class Summary(BaseModel):
    bestCheckpoint: BestSummary | None  # noqa: N815
    latestCheckpoint: LatestSummary | None  # noqa: N815
    totalSize: str  # noqa: N815


class CheckpointList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "checkpoints": [CHECKPOINT_EXAMPLE],
                    "totalCount": 12,
                    "nextCursor": "eyJrIjogMC43LCAidCI6IDE3NjUwMjk2MDAuMH0",
                    "summary": {
                        "bestCheckpoint": {
                            "checkpointId": EXAMPLE_PARENT,
                            "metrics": {"validationLoss": 0.65},
                        },
                        "latestCheckpoint": {
                            "checkpointId": EXAMPLE_ID,
                            "createdAt": "2026-12-06T14:00:00Z",
                        },
                        "totalSize": "27.6GB",
                    },
                }
            ]
        }
    )
    checkpoints: list[Checkpoint]
    totalCount: int  # noqa: N815
    # the next page's cursor; null after the last page
    nextCursor: str | None = None  # noqa: N815
    summary: Summary


ENDPOINT_EXAMPLE: JsonDict = {
    "id": EXAMPLE_ENDPOINT,
    "name": "serving-prod",
    "url": f"http://127.0.0.1:8000/v2/endpoints/{EXAMPLE_ENDPOINT}",
    "status": "ready",
    "checkpointId": EXAMPLE_ID,
    "gpuIds": ["0", "1"],
    "workerCount": 2,
    "createdAt": "2026-12-06T14:00:00Z",
    "downloadUrl": EXAMPLE_URL,
    "downloadUrlExpiresAt": "2026-12-06T15:00:00Z",
}


class Endpoint(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ENDPOINT_EXAMPLE]})
    id: str = Field(json_schema_extra={"pattern": ENDPOINT_ID_PATTERN})
    name: str
    url: str
    status: str
    checkpointId: str  # noqa: N815
    gpuIds: list[str]  # noqa: N815
    workerCount: int  # noqa: N815
    createdAt: str  # noqa: N815
    downloadUrl: str  # noqa: N815
    downloadUrlExpiresAt: str  # noqa: N815


class EndpointList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"endpoints": [ENDPOINT_EXAMPLE]}]})
    endpoints: list[Endpoint]


class JobList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"jobs": [EXAMPLE_JOB]}]})
    jobs: list[str]


class Missing(BaseModel):
    """The block ids the server lacks, of those asked about; send these."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"missing": [EXAMPLE_BLOCK]}]})
    missing: list[str]


class Stats(BaseModel):
    """The caller's usage, counted as if it were alone in the store."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "checkpoints": 12,
                    "logicalBytes": 27_600_000_000,
                    "storedBytes": 9_800_000_000,
                    "dedupRatio": 2.82,
                }
            ]
        }
    )
    checkpoints: int
    logicalBytes: int  # noqa: N815
    storedBytes: int  # noqa: N815
    dedupRatio: float  # noqa: N815


class StoreInfo(BaseModel):
    """How a client cuts and sends blocks as the store does."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "formatVersion": 1,
                    "chunker": {
                        "algorithm_version": 3,
                        "min_size": 65536,
                        "avg_size": 262144,
                        "max_size": 1048576,
                        "normalized_chunking": 1,
                        "tensor_block_bytes": 1048576,
                        "tensor_group_bytes": 262144,
                    },
                    "maxBlockBatchBytes": 67108864,
                    "blockBatchEncodings": ["identity", "zstd"],
                    "blockFrameVersions": [1, 2, 3],
                }
            ]
        }
    )

    formatVersion: int  # noqa: N815
    chunker: dict[str, object]
    maxBlockBatchBytes: int  # noqa: N815
    blockBatchEncodings: list[str]  # noqa: N815
    # the versions of PUT .../blocks frames the server takes (blockframes.py)
    blockFrameVersions: list[int]  # noqa: N815


class GcResult(BaseModel):
    """What one GC run did."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pendingExpired": 0,
                    "blocksMaterialized": 0,
                    "blocksRemoved": 812,
                    "packsDeleted": 3,
                    "packsCompacted": 1,
                    "packsMerged": 0,
                    "orphanPacksDeleted": 0,
                    "tempFilesDeleted": 0,
                    "bytesFreed": 803_000_000,
                }
            ]
        }
    )
    pendingExpired: int  # noqa: N815
    blocksMaterialized: int  # noqa: N815
    blocksRemoved: int  # noqa: N815
    packsDeleted: int  # noqa: N815
    packsCompacted: int  # noqa: N815
    packsMerged: int  # noqa: N815
    orphanPacksDeleted: int  # noqa: N815
    tempFilesDeleted: int  # noqa: N815
    bytesFreed: int  # noqa: N815


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: Literal["ok", "insufficient_storage"]
    freeBytes: int | None = None  # noqa: N815 - with insufficient_storage


class ErrorBody(BaseModel):
    code: str  # a stable, machine-readable name: not_found, invalid_argument...
    message: str
    # an error of the store: its class, and the attributes it carries
    type: str | None = None
    fields: dict[str, object] | None = None


class Error(BaseModel):
    """Every error answer (4xx, 5xx)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "not_found",
                        "message": f"checkpoint '{EXAMPLE_ID}' not found",
                        "type": "CheckpointNotFound",
                        "fields": {"checkpointId": EXAMPLE_ID},
                    }
                }
            ]
        }
    )
    error: ErrorBody
