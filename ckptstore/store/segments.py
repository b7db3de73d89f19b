"""Format sniffing: where the tensors of a checkpoint stream lie (pure, no I/O).

A stream is described as consecutive regions: tensor data (with the element
width, so blocks align to elements and the encoder knows the width) and
opaque bytes. A sniffer failure is never an error: the whole stream is then
one opaque region and takes the plain FastCDC path.

Formats: safetensors (its JSON header gives every tensor's dtype and byte
range, here); PyTorch zip archives (found entry by entry as the stream goes
by, in torchzip.py).
"""

from __future__ import annotations

import json
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


def sniff_regions(head: memoryview) -> list[Region]:
    """The regions of a stream, judged from its first bytes (as many as are at hand)."""
    return _safetensors(head) or WHOLE_STREAM


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
