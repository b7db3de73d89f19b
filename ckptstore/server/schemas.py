"""Request bodies, and response models for the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ckptstore.store.catalog import CHECKPOINT_TYPES

CheckpointType = Literal["automatic", "best", "manual", "final"]

MAX_COUNTER = 2**63 - 1  # epochs and steps are stored as signed 64-bit integers
MAX_METRICS = 256  # metric names per checkpoint
MAX_KEEP = 1_000_000  # automatic checkpoints a job may keep
# Block ids in one request: a checkpoint of a million blocks (a TiB in blocks of a
# MiB) fits within ServerSettings.max_json_body_bytes.
MAX_BLOCK_IDS = 1_000_000
# Names and descriptions are shown in listings and the web page: no control characters.
PrintableText = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]


class CreateCheckpoint(BaseModel):
    """A manual checkpoint request (name, description), or a trainer registering its own.

    type, epoch and step are checked by the store, so a bad one is answered with the
    store's own error class (``InvalidCheckpointType``, ``InvalidArgument``)."""

    model_config = ConfigDict(extra="forbid")
    name: PrintableText | None = Field(None, min_length=1, max_length=256)
    description: str | None = Field(None, max_length=4096)
    type: str = Field("manual", json_schema_extra={"enum": list(CHECKPOINT_TYPES)})
    epoch: int | None = Field(None, le=MAX_COUNTER, json_schema_extra={"minimum": 0})
    step: int | None = Field(None, le=MAX_COUNTER, json_schema_extra={"minimum": 0})
    metrics: dict[str, float] | None = Field(None, max_length=MAX_METRICS)


# A checkpoint reference (store/refs.py): an id, a unique prefix of one, or JOB:ALIAS.
MAX_REFERENCE_CHARS = 128 + len(":latest")


class DeployEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    # a reference: the endpoint pins the checkpoint it names when deployed
    checkpointId: str = Field(min_length=1, max_length=MAX_REFERENCE_CHARS)  # noqa: N815
    gpuIds: list[str] = Field(default_factory=list, max_length=64)  # noqa: N815
    workerCount: int = Field(1, ge=1, le=1000)  # noqa: N815


class UpdateEndpoint(BaseModel):
    """``PATCH /v2/endpoints/{id}``: the fields to change; a new ``checkpointId`` re-points
    the endpoint (it pins that checkpoint and lets go of the old one at once)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=256)
    checkpointId: str | None = Field(None, min_length=1, max_length=MAX_REFERENCE_CHARS)  # noqa: N815
    gpuIds: list[str] | None = Field(None, max_length=64)  # noqa: N815
    workerCount: int | None = Field(None, ge=1, le=1000)  # noqa: N815


class BlockIds(BaseModel):
    """Block ids, 64 hex characters each, in checkpoint order (for missing)."""

    model_config = ConfigDict(extra="forbid")
    blockIds: list[str] = Field(max_length=MAX_BLOCK_IDS)  # noqa: N815


MAX_SLOT_CHARS = 1024  # "<tensor name>#<index>"; longer names are not tensor names


class CommitBody(BlockIds):
    """The checkpoint's block ids in order, and optionally each block's tensor slot
    (``"<tensor>#<index>"`` or null), so the job's previous checkpoint can be stored as
    deltas on this one."""

    slots: list[Annotated[str, Field(max_length=MAX_SLOT_CHARS)] | None] | None = Field(
        default=None, max_length=MAX_BLOCK_IDS
    )
    # extension: where training was, for a checkpoint requested before its data existed
    epoch: int | None = Field(None, ge=0, le=MAX_COUNTER)
    step: int | None = Field(None, ge=0, le=MAX_COUNTER)
    metrics: dict[str, float] | None = Field(None, max_length=MAX_METRICS)


class JobSettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bestMetric: str = Field("validationLoss", min_length=1, max_length=128)  # noqa: N815
    bestMode: Literal["min", "max"] | None = None  # noqa: N815
    keepAutomatic: int | None = Field(None, ge=1, le=MAX_KEEP)  # noqa: N815


class Checkpoint(BaseModel):
    checkpointId: str  # noqa: N815
    name: str
    epoch: int | None
    step: int | None
    metrics: dict[str, float] | None = None
    size: str
    type: CheckpointType
    downloadUrl: str | None  # noqa: N815
    deployable: bool
    createdAt: str  # noqa: N815
    jobId: str  # noqa: N815
    description: str | None
    status: Literal["pending", "ready"]
    sizeBytes: int  # noqa: N815
    storedBytes: int  # noqa: N815
    downloadUrlExpiresAt: str | None  # noqa: N815
    parentId: str | None = None  # noqa: N815 - a best checkpoint: the checkpoint it copies


class JobSummary(BaseModel):
    """``GET /v2/training/jobs/{jobId}/summary``: whole checkpoint objects, exact size."""

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
    checkpoints: list[Checkpoint]
    totalCount: int  # noqa: N815
    summary: Summary


class Endpoint(BaseModel):
    id: str
    name: str
    url: str
    status: str
    checkpointId: str  # noqa: N815
    gpuIds: list[str]  # noqa: N815
    workerCount: int  # noqa: N815
    createdAt: str  # noqa: N815
    downloadUrl: str  # noqa: N815
    downloadUrlExpiresAt: str  # noqa: N815


class Missing(BaseModel):
    missing: list[str]


class ErrorBody(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    error: ErrorBody
