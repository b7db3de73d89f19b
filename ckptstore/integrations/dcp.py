"""PyTorch Distributed Checkpoint (DCP) into ckptstore: a StorageWriter and a StorageReader.

::

    import torch.distributed.checkpoint as dcp
    writer = CkptStoreWriter(client, "job_x", step=1200)
    dcp.save(state_dict, storage_writer=writer)          # writer.record: the checkpoint
    dcp.load(state_dict, storage_reader=CkptStoreReader(client), checkpoint_id="job_x:latest")

One DCP save is one ckptstore checkpoint, written with no local file: a
``torch.save`` of ``{"format": ..., "metadata": <DCP Metadata, pickled>,
"items": {storage key: tensor or bytes}}`` streamed into the store
(``ckptstore.torch``), so the store cuts and deduplicates it tensor by tensor.
``write_data`` keeps each item it resolves (a CPU tensor is kept as is, a device
tensor copied to CPU) until ``finish``, which has the metadata and sends the whole
checkpoint. The reader loads it once and copies each requested item into place,
narrowed to the requested chunk, as torch's ``FileSystemReader`` does.

**One process only.** DCP's protocol has every rank write its own items
(``write_data``) and the coordinator alone commit (``finish``); with several ranks
each writer here sees only its own items and would need the other ranks' data in
the coordinator's checkpoint. That needs the store to let several processes add
files to one pending checkpoint and the coordinator commit it (an upload session
per rank, committed together), which ckptstore does not offer yet; ``write_data``
refuses a plan of any rank but the coordinator in a multi-rank run. For now, a
multi-rank job can gather its state dict to one rank first (e.g.
``get_model_state_dict(..., options=StateDictOptions(full_state_dict=True,
cpu_offload=True))``) and save that.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Sequence
from typing import Any, Unpack

import torch
from torch.distributed.checkpoint.metadata import Metadata, MetadataIndex, StorageMeta
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    SavePlan,
    SavePlanner,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from ckptstore import torch as ckpt_torch
from ckptstore.errors import FormatError, InvalidArgument
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.checkpoints import CheckpointFields

FORMAT = "ckptstore-dcp/1"  # persisted: a reader refuses what it does not know


class CkptStoreWriter(StorageWriter):
    """Each ``dcp.save`` through this writer adds a checkpoint of ``job_id`` to ``target``
    (a ``CheckpointStore`` or ``Client``) with ``fields`` (type, epoch, step, metrics,
    name, description); ``dcp.save(checkpoint_id=...)`` names it."""

    def __init__(self, target: Any, job_id: str, **fields: Unpack[CheckpointFields]) -> None:
        super().__init__()
        self.target = target
        self.job_id = job_id
        self.fields = fields
        self.record: CheckpointRecord | None = None  # the last checkpoint written
        self._name: str | None = None
        self._items: dict[str, torch.Tensor | bytes] = {}
        self._rank = 0
        self._multi_rank = False

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        """A new save; ``checkpoint_id`` (DCP's) becomes the checkpoint's name."""
        self._name = None if checkpoint_id is None else str(checkpoint_id)
        self._items = {}

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self._rank = int(kwargs.get("rank") or 0)
        self._multi_rank = not is_coordinator or self._rank != 0

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        if len(plans) > 1:
            raise InvalidArgument("plans", len(plans), "one rank (module docstring: multi-rank)")
        return plans

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """Resolve each item and keep it for ``finish``; its storage key is its number."""
        if self._multi_rank:
            raise InvalidArgument("rank", self._rank, "0 of one (module docstring: multi-rank)")
        results = []
        for item in plan.items:
            key = str(len(self._items))
            data = planner.resolve_data(item)
            if item.type == WriteItemType.BYTE_IO:
                assert isinstance(data, io.BytesIO)
                self._items[key] = data.getvalue()
                size = len(self._items[key])
            else:
                assert isinstance(data, torch.Tensor)
                tensor = data.detach().cpu()
                if tensor.untyped_storage().nbytes() != tensor.nbytes:
                    tensor = tensor.clone()  # a view: torch.save would write all its storage
                self._items[key] = tensor
                size = tensor.nbytes
            results.append(WriteResult(index=item.index, size_in_bytes=size, storage_data=key))
        future: Future[list[WriteResult]] = Future()
        future.set_result(results)
        return future

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """Send the checkpoint: the metadata with where each item is, and the items."""
        metadata.storage_data = {r.index: r.storage_data for rank in results for r in rank}
        metadata.storage_meta = self.storage_meta()
        fields = CheckpointFields(**self.fields)
        if self._name is not None:
            fields.setdefault("name", self._name)
        body = {"format": FORMAT, "metadata": pickle.dumps(metadata), "items": self._items}
        self.record = ckpt_torch.save(body, self.target, self.job_id, **fields)
        self._items = {}

    def storage_meta(self) -> StorageMeta | None:
        return StorageMeta(checkpoint_id=self._name)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        """Never picked by DCP on its own: it needs a store and a job."""
        return False


class CkptStoreReader(StorageReader):
    """``dcp.load`` from the checkpoint ``checkpoint_id`` of ``target`` (an id, or a
    reference the target resolves); ``dcp.load(checkpoint_id=...)`` sets it too."""

    def __init__(self, target: Any, checkpoint_id: str | None = None) -> None:
        super().__init__()
        self.target = target
        self.checkpoint_id = checkpoint_id
        self._items: dict[str, Any] = {}
        self._storage_data: dict[MetadataIndex, Any] = {}

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id is not None:
            self.checkpoint_id = str(checkpoint_id)
        self._items = {}

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """Load the checkpoint (once) and return its DCP metadata."""
        if self.checkpoint_id is None:
            raise InvalidArgument("checkpoint_id", None, "a checkpoint written by CkptStoreWriter")
        checkpoint_id = self.target.resolve(self.checkpoint_id)
        body = ckpt_torch.load(self.target, checkpoint_id, map_location="cpu")
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            found = body.get("format") if isinstance(body, dict) else None
            raise FormatError(
                f"checkpoint {checkpoint_id} was not written by CkptStoreWriter"
                f" (format {found or 'none'}; this reader knows {FORMAT})"
            )
        self._items = body["items"]
        metadata: Metadata = pickle.loads(body["metadata"])  # noqa: S301 - the checkpoint's own
        return metadata

    def set_up_storage_reader(
        self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any
    ) -> None:
        self._storage_data = metadata.storage_data

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        """Copy each requested item (or chunk of one) into the state dict."""
        for request in plan.items:
            data = self._items[self._storage_data[request.storage_index]]
            if request.type == LoadItemType.BYTE_IO:
                planner.load_bytes(request, io.BytesIO(data))
                continue
            chunk = _narrow(data, request.storage_offsets, request.lengths)
            target = planner.resolve_tensor(request).detach()
            if target.size() != chunk.size():
                raise FormatError(
                    f"item {request.storage_index} has shape {tuple(chunk.size())};"
                    f" the state dict wants {tuple(target.size())}"
                )
            target.copy_(chunk)
            planner.commit_tensor(request, target)
        future: Future[None] = Future()
        future.set_result(None)
        return future

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        """Never picked by DCP on its own: it needs a store."""
        return False


def _narrow(tensor: torch.Tensor, offsets: Sequence[int], lengths: Sequence[int]) -> torch.Tensor:
    """The chunk ``[offset, offset + length)`` of each dimension."""
    for dim, (offset, length) in enumerate(zip(offsets, lengths, strict=True)):
        if length < tensor.size(dim):
            tensor = tensor.narrow(dim, offset, length)
    return tensor


__all__ = ["CkptStoreReader", "CkptStoreWriter"]
