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
import json
import math
import struct
from dataclasses import dataclass

MAX_HEADER_BYTES = 100 * 1024 * 1024
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


@dataclass(frozen=True)
class Region:
    start: int
    end: int | None  # None: to the end of the stream
    width: int  # bytes per element of tensor data; 0 for opaque bytes
    name: str = ""


WHOLE_STREAM = [Region(0, None, 0)]


NPY_MAGIC = b"\x93NUMPY"
MAX_NPY_HEADER = 64 * 1024


def sniff_regions(head: memoryview) -> list[Region]:
    """The regions of a stream, judged from its first bytes (as many as are at hand)."""
    return _safetensors(head) or _npy(head) or WHOLE_STREAM


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
    try:
        header = json.loads(bytes(head[8 : 8 + header_len]))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    base = 8 + header_len
    tensors: list[Region] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            width = SAFETENSORS_WIDTHS.get(info["dtype"], 1)
            start, end = (int(x) for x in info["data_offsets"])
        except (TypeError, KeyError, ValueError):
            return None
        if not 0 <= start <= end:
            return None
        if end > start:
            tensors.append(Region(base + start, base + end, width, str(name)))
    tensors.sort(key=lambda r: r.start)
    regions = [Region(0, base, 0)]
    for tensor in tensors:
        last_end = regions[-1].end
        assert last_end is not None
        if tensor.start < last_end:
            return None  # overlapping tensors: not a layout we trust
        if tensor.start > last_end:
            regions.append(Region(last_end, tensor.start, 0))
        regions.append(tensor)
    regions.append(Region(regions[-1].end or base, None, 0))
    return regions
