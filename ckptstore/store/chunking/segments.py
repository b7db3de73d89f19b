"""Format sniffing: where the tensors of a checkpoint stream lie (pure, no I/O).

A stream is described as consecutive regions: tensor data (with the element
width, so blocks align to elements and the encoder knows the width) and
opaque bytes. A sniffer failure is never an error: the whole stream is then
one opaque region and takes the plain FastCDC path.

Formats: safetensors (its JSON header gives every tensor's dtype and byte
range, here); NumPy ``.npy`` (one array after a small header, here);
PyTorch zip archives and NumPy ``.npz`` (found entry by entry as the stream
goes by, in torchzip.py).
"""

from __future__ import annotations

import ast
import contextlib
import gc
import json
import math
import struct
from collections.abc import Iterator
from typing import NamedTuple

MAX_HEADER_BYTES = 100 * 1024 * 1024
# A header longer than the window at hand is waited for up to this length (parsed, it
# costs several times its size in memory); a longer one leaves the stream opaque.
MAX_CARRIED_HEADER_BYTES = 16 * 1024 * 1024
SAFETENSORS_WIDTHS = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


class Region(NamedTuple):
    """A stretch of the stream (a tuple: a file of many tensors makes one per tensor)."""

    start: int
    end: int | None  # None: to the end of the stream
    width: int  # bytes per element of tensor data; 0 for opaque bytes
    name: str = ""  # a tensor's name; of a group, its first tensor's
    dtype: str = ""  # the format's name for the tensors' type, where it gives one
    tensors: int = 1  # how many tensors lie in the region (more than one: a group)

    @property
    def nbytes(self) -> int:
        """The region's length (0 for one that runs to the end of the stream)."""
        return 0 if self.end is None else self.end - self.start

    def slot(self, index: int) -> str:
        """The slot of the region's block ``index``: ``<name>#<index>`` for a tensor,
        ``<first tensor>#<index>+<tensors>`` for a group. The part after the last ``#``
        is digits only for a tensor and holds a ``+`` for a group, so the two never
        name the same slot, and first tensor names are unique within a file."""
        if self.tensors == 1:
            return f"{self.name}#{index}"
        return f"{self.name}#{index}+{self.tensors}"


WHOLE_STREAM = [Region(0, None, 0)]


NPY_MAGIC = b"\x93NUMPY"
MAX_NPY_HEADER = 64 * 1024


def sniff_regions(head: memoryview) -> list[Region]:
    """The regions of a stream, judged from its first bytes (as many as are at hand)."""
    return _safetensors(head) or _npy(head) or WHOLE_STREAM


def header_bytes_needed(head: memoryview) -> int:
    """How many bytes from the stream's start ``sniff_regions`` needs to see the whole
    header of a safetensors stream that ``head`` begins (0: not one, or none beyond
    ``head``): a header may run past the first window of a stream."""
    if len(head) < 9:
        return 0
    (header_len,) = struct.unpack_from("<Q", head)
    if not 2 <= header_len <= MAX_CARRIED_HEADER_BYTES or head[8] != ord("{"):
        return 0
    return 8 + header_len if 8 + header_len > len(head) else 0


def group_small_tensors(
    regions: list[Region], small_bytes: int, group_bytes: int, max_bytes: int
) -> list[Region]:
    """``regions`` with each run of small tensors (under ``small_bytes``) merged into
    groups of about ``group_bytes``.

    A small tensor joins the open group when it follows the group's last tensor
    directly (no opaque bytes between) with the same dtype and width, and the group
    stays within ``max_bytes`` (a tensor block: a group is then one block); a group
    closes once it holds ``group_bytes`` or more, and before any other region.
    Groups depend only on the layout (names, dtypes and sizes in order), so a later
    save of the same tensors has the same groups.
    """
    out: list[Region] = []
    run: list[Region] = []
    total = 0

    def close() -> None:
        nonlocal total
        if len(run) == 1:
            out.append(run[0])
        elif run:
            first, last = run[0], run[-1]
            out.append(
                Region(first.start, last.end, first.width, first.name, first.dtype, len(run))
            )
        run.clear()
        total = 0

    for region in regions:
        small = region.width and region.end is not None and region.nbytes < small_bytes
        if not small:
            close()
            out.append(region)
            continue
        if run and (
            run[-1].end != region.start
            or (run[-1].width, run[-1].dtype) != (region.width, region.dtype)
            or total + region.nbytes > max_bytes
        ):
            close()
        run.append(region)
        total += region.nbytes
        if total >= group_bytes:
            close()
    close()
    return out


def npy_layout(head: bytes | memoryview) -> tuple[int, int, int] | None:
    """(offset of the array data, its length, element width) of a ``.npy`` blob that
    starts ``head``; None if it is not one, or not a plain numeric array. The header
    is a Python literal, read with ``ast.literal_eval`` (never executed)."""
    if len(head) < 10 or bytes(head[:6]) != NPY_MAGIC:
        return None
    major = head[6]
    if major == 1:
        (header_len,), start = struct.unpack_from("<H", head, 8), 10
    elif major in (2, 3) and len(head) >= 12:
        (header_len,), start = struct.unpack_from("<I", head, 8), 12
    else:
        return None
    if header_len > MAX_NPY_HEADER or start + header_len > len(head):
        return None
    try:
        header = ast.literal_eval(bytes(head[start : start + header_len]).decode("latin-1"))
        descr, shape = header["descr"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(descr, str) or len(descr) < 3 or descr[1] not in "fiucb":
        return None  # structured, object or other dtypes: opaque bytes
    try:
        itemsize = int(descr[2:])
        count = math.prod(int(d) for d in shape)
    except (ValueError, TypeError):
        return None
    if itemsize <= 0 or count < 0:
        return None
    width = itemsize // 2 if descr[1] == "c" else itemsize
    return start + header_len, count * itemsize, width


def _npy(head: memoryview) -> list[Region] | None:
    layout = npy_layout(head)
    if layout is None:
        return None
    data_start, nbytes, width = layout
    end = data_start + nbytes
    return [Region(0, data_start, 0), Region(data_start, end, width, "array"), Region(end, None, 0)]


def _safetensors(head: memoryview) -> list[Region] | None:
    if len(head) < 10:
        return None
    (header_len,) = struct.unpack_from("<Q", head)
    if not 2 <= header_len <= min(MAX_HEADER_BYTES, len(head) - 8) or head[8] != ord("{"):
        return None
    with _collector_paused():
        return _safetensors_layout(head, header_len)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: a header of many tensors makes a dict
    and a tuple per tensor, none of them cyclic, and the collector would go through
    them all again and again as they are made."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _safetensors_layout(head: memoryview, header_len: int) -> list[Region] | None:
    try:
        header = json.loads(bytes(head[8 : 8 + header_len]))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    base = 8 + header_len
    tensors: list[tuple[int, int, int, str, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = info["dtype"]
            width = SAFETENSORS_WIDTHS.get(dtype, 1)
            start, end = info["data_offsets"]
            start, end = int(start), int(end)
        except (TypeError, KeyError, ValueError):
            return None
        if not 0 <= start <= end:
            return None
        if end > start:
            tensors.append((base + start, base + end, width, str(name), str(dtype)))
    tensors.sort()
    regions = [Region(0, base, 0)]
    last_end = base
    for start, end, width, name, dtype in tensors:
        if start < last_end:
            return None  # overlapping tensors: not a layout we trust
        if start > last_end:
            regions.append(Region(last_end, start, 0))
        regions.append(Region(start, end, width, name, dtype))
        last_end = end
    regions.append(Region(last_end, None, 0))
    return regions
