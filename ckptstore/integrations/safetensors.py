"""Tensors out of a stored safetensors file, reading only the bytes that hold them.

A safetensors file is an 8-byte header length, a JSON header (each tensor's dtype,
shape and byte range) and the tensors' bytes. ``load_tensor`` reads the header and
then the one tensor's range through ``open_reader``, so an embedded store decodes
only the blocks under that range and a server is asked for it with HTTP Range
requests; the rest of the file is never fetched. The bytes are handed to the
safetensors library (as a file of that one tensor), which keeps dtypes and
validation its own::

    from ckptstore.integrations import safetensors as st
    embedding = st.load_tensor(client, checkpoint_id, "model.embed_tokens.weight")
    everything = st.load_file(client, checkpoint_id)
    # of a folder checkpoint, name the file:
    weights = st.load_tensor(store, checkpoint_id, "lm_head.weight", path="model.safetensors")

``pip install ckptstore[safetensors]`` (and torch for ``framework="pt"``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ckptstore.errors import InvalidArgument
from ckptstore.store.restore import CheckpointReader, SeekableReader

Framework = Literal["pt", "numpy"]

# safetensors refuses headers above 100 MB; so do we, before reading one
MAX_HEADER_BYTES = 100_000_000


class OpensReaders(Protocol):
    """A ``CheckpointStore`` or a ``Client``."""

    def open_reader(self, checkpoint_id: str, *, path: str | None = None) -> SeekableReader: ...


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies in the file, as its header says."""

    name: str
    dtype: str  # safetensors' spelling: F32, BF16, I64, ...
    shape: tuple[int, ...]
    start: int  # byte offsets in the file, end exclusive
    end: int


@dataclass(frozen=True)
class Header:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def read_header(reader: SeekableReader, checkpoint_id: str = "") -> Header:
    """The header of the safetensors file ``reader`` reads (two small reads)."""
    reader.seek(0)
    prefix = reader.read(8)
    if len(prefix) < 8:
        raise _not_safetensors(checkpoint_id, "shorter than 8 bytes")
    (length,) = struct.unpack("<Q", prefix)
    if length > min(MAX_HEADER_BYTES, reader.size - 8):
        raise _not_safetensors(checkpoint_id, f"a header length of {length} bytes")
    try:
        entries: dict[str, Any] = json.loads(reader.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_safetensors(checkpoint_id, f"a header that is not JSON ({exc})") from None
    data_start = 8 + length
    metadata = entries.pop("__metadata__", None) or {}
    try:
        tensors = {
            name: TensorInfo(
                name,
                str(entry["dtype"]),
                tuple(int(n) for n in entry["shape"]),
                data_start + int(entry["data_offsets"][0]),
                data_start + int(entry["data_offsets"][1]),
            )
            for name, entry in entries.items()
        }
    except (KeyError, TypeError, ValueError, IndexError):
        problem = "a header entry without dtype, shape or offsets"
        raise _not_safetensors(checkpoint_id, problem) from None
    for info in tensors.values():
        if not data_start <= info.start <= info.end <= reader.size:
            raise _not_safetensors(checkpoint_id, f"tensor {info.name!r} outside the file")
    return Header(tensors, dict(metadata))


def tensor_names(target: OpensReaders, checkpoint_id: str, *, path: str | None = None) -> list[str]:
    """The names of the tensors in a stored safetensors file, in header order."""
    with _open(target, checkpoint_id, path) as reader:
        return list(read_header(reader, checkpoint_id).tensors)


def load_tensor(
    target: OpensReaders,
    checkpoint_id: str,
    name: str,
    *,
    path: str | None = None,
    framework: Framework = "pt",
) -> Any:
    """One tensor of a stored safetensors file (a ``CheckpointStore`` or ``Client``
    ``target``; of a folder checkpoint, the file at ``path``), reading the header and
    that tensor's bytes only."""
    return load_file(target, checkpoint_id, path=path, names=[name], framework=framework)[name]


def load_file(
    target: OpensReaders,
    checkpoint_id: str,
    *,
    path: str | None = None,
    names: Iterable[str] | None = None,
    framework: Framework = "pt",
) -> dict[str, Any]:
    """The tensors of a stored safetensors file: all of them (one sequential read), or
    those ``names`` (each tensor's range read on its own)."""
    if framework not in ("pt", "numpy"):
        raise InvalidArgument("framework", framework, "'pt' or 'numpy'")
    with _open(target, checkpoint_id, path) as reader:
        if names is None:
            reader.seek(0)
            return _deserialize(reader.read(), framework)
        _read_ahead(reader, 0)  # the header: the first block or two
        header = read_header(reader, checkpoint_id)
        wanted = list(names)
        missing = [name for name in wanted if name not in header.tensors]
        if missing:
            raise InvalidArgument(
                "name", missing[0], f"a tensor of checkpoint {checkpoint_id}: {_some(header)}"
            )
        infos = sorted((header.tensors[name] for name in wanted), key=lambda i: i.start)
        return {info.name: _load_one(reader, info, framework) for info in infos}


def _open(target: OpensReaders, checkpoint_id: str, path: str | None) -> SeekableReader:
    if path is None:  # a target that has no folder checkpoints takes no path
        return target.open_reader(checkpoint_id)
    return target.open_reader(checkpoint_id, path=path)


def _read_ahead(reader: SeekableReader, n_bytes: int) -> None:
    """An embedded store's reader decodes ahead of reads; past a tensor's end is waste."""
    if isinstance(reader, CheckpointReader):
        reader.readahead_bytes = n_bytes


def _load_one(reader: SeekableReader, info: TensorInfo, framework: Framework) -> Any:
    _read_ahead(reader, info.end - info.start)  # the tensor's blocks, decoded in parallel
    reader.seek(info.start)
    data = reader.read(info.end - info.start)
    # a file of this one tensor: the library checks its size against dtype and shape
    entry = {"dtype": info.dtype, "shape": list(info.shape), "data_offsets": [0, len(data)]}
    header = json.dumps({info.name: entry}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned, as writers do
    return _deserialize(struct.pack("<Q", len(header)) + header + data, framework)[info.name]


def _deserialize(data: bytes, framework: Framework) -> dict[str, Any]:
    if framework == "pt":
        import safetensors.torch

        return safetensors.torch.load(data)
    import safetensors.numpy

    return safetensors.numpy.load(data)


def _some(header: Header) -> str:
    names = list(header.tensors)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _not_safetensors(checkpoint_id: str, problem: str) -> InvalidArgument:
    return InvalidArgument("checkpoint", checkpoint_id, f"a safetensors file (it has {problem})")
