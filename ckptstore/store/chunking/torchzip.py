"""Streaming segmentation of PyTorch zip checkpoints (``torch.save``), pure and without I/O.

Entries are found from their local headers as the stream goes by. torch writes
them with data descriptors (sizes 0 in the header), so an entry ends where a
descriptor ``PK\\x07\\x08`` follows whose size field equals the bytes since the
entry's data start. The element width and length of each ``data/<key>``
storage come from ``data.pkl``, read with pickletools (never executed), which
torch writes first: a storage of known length ends where its descriptor must
be, so only entries of unknown length are searched for a descriptor.
"""

from __future__ import annotations

import pickletools
import re
import struct
from dataclasses import dataclass

from ckptstore.store.chunking.segments import MAX_NPY_HEADER, NPY_MAGIC, Region, npy_layout

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
DESCRIPTOR = b"PK\x07\x08"
HEADER = struct.Struct("<4sHHHHHIIIHH")
MAX_PICKLE_BYTES = 64 * 1024 * 1024
_DATA_ENTRY = re.compile(r"(?:^|/)data/([^/]+)$")
STORAGE_WIDTHS = {
    "FloatStorage": 4,
    "DoubleStorage": 8,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 4,
    "ComplexDoubleStorage": 8,
}


_INT_OPS = ("BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG")


def storage_widths(pickle_bytes: bytes) -> dict[str, int]:
    """Storage key -> element width, from the persistent ids in a torch data.pkl."""
    return {key: width for key, (width, _) in storage_layout(pickle_bytes).items()}


def storage_layout(pickle_bytes: bytes) -> dict[str, tuple[int, int | None]]:
    """Storage key -> (element width, byte length or None), from a torch data.pkl."""
    layout: dict[str, tuple[int, int | None]] = {}
    recent: list[tuple[str, str | int]] = []  # strings, globals and ints, as pushed
    memo: dict[int, tuple[str, str | int]] = {}
    try:
        for op, arg, _ in pickletools.genops(pickle_bytes):
            name = op.name
            if name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8"):
                recent.append(("s", str(arg)))
            elif name in _INT_OPS and isinstance(arg, int):
                recent.append(("i", arg))
            elif name == "GLOBAL":
                recent.append(("g", str(arg).split(" ")[-1]))
            elif name == "STACK_GLOBAL" and len(recent) >= 2:
                recent[-2:] = [("g", str(recent[-1][1]))]
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and recent:
                memo[int(str(arg))] = recent[-1]
            elif name == "MEMOIZE" and recent:
                memo[len(memo)] = recent[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(int(str(arg)), ("?", "")))
            elif name == "BINPERSID":
                _record(recent, layout)
    except (ValueError, IndexError, KeyError):
        pass  # a pickle we cannot read fully: keep what was found
    return layout


def _record(recent: list[tuple[str, str | int]], layout: dict[str, tuple[int, int | None]]) -> None:
    """At a persistent load: ... ('s','storage') ('g', type) ('s', key) ('s', location)
    ('i', numel)."""
    for i in range(len(recent) - 1, -1, -1):
        if recent[i] == ("s", "storage") and i + 2 < len(recent):
            kind, storage = recent[i + 1]
            key_kind, key = recent[i + 2]
            if kind == "g" and key_kind == "s" and storage in STORAGE_WIDTHS:
                width = STORAGE_WIDTHS[str(storage)]
                numel = recent[i + 4][1] if i + 4 < len(recent) else None
                size = numel * width if isinstance(numel, int) else None
                if "Complex" in str(storage) and size is not None:
                    size *= 2  # complex storages count elements of two floats
                layout[str(key)] = (width, size)
            return


@dataclass(frozen=True)
class _Entry:
    start: int  # where its data starts in the stream
    name: str
    zip64: bool
    size: int | None  # its data's length, when data.pkl told it


class ZipSegmenter:
    """Finds the regions of a torch zip stream as its bytes arrive."""

    def __init__(self) -> None:
        self.regions: list[Region] = []
        self._pos = 0  # next local header, or the data start of the open entry
        self._open: _Entry | None = None  # the entry whose data is going by
        self._scanned = 0  # data bytes already searched for a descriptor
        self._pickle = bytearray()
        self._layout: dict[str, tuple[int, int | None]] = {}  # storage key -> width, length
        self._done = False

    @staticmethod
    def matches(head: memoryview) -> bool:
        return bytes(head[:4]) == LOCAL

    def open_region(self) -> Region | None:
        """The entry whose end is not found yet, as a region without an end."""
        if self._open is None:
            return None
        return Region(
            self._open.start, None, self._width(self._open.name), _member(self._open.name)
        )

    def advance(self, buf: memoryview, offset: int, final: bool) -> int:
        """Read ``buf`` (stream bytes from ``offset``); returns how far regions are known."""
        end = offset + len(buf)
        while not self._done:
            if self._open is None:
                if not self._header(buf, offset, end):
                    break
            elif not self._data(buf, offset, end):
                break
        if self._done:
            return end
        if final:
            self._finish_opaque(self._pos)
            return end
        if self._open is not None:
            if self._open.size is not None:  # cut no further than the known end
                return min(end, self._open.start + self._open.size)
            return max(self._pos, end - 24)  # a descriptor may straddle the buffer end
        return min(self._pos, end)  # an entry of known size may end past this buffer

    def _width(self, name: str) -> int:
        match = _DATA_ENTRY.search(name)
        return self._layout.get(match.group(1), (0, None))[0] if match else 0

    def _header(self, buf: memoryview, offset: int, end: int) -> bool:
        at = self._pos - offset
        if end - self._pos < 4:
            return False
        if buf[at : at + 4] != LOCAL:
            self._finish_opaque(self._pos)  # the central directory, or not a zip we follow
            return False
        if end - self._pos < HEADER.size:
            return False
        _, _, flags, method, _, _, _, csize, _, name_len, extra_len = HEADER.unpack_from(buf, at)
        data_start = self._pos + HEADER.size + name_len + extra_len
        if data_start > end:
            return False
        name = bytes(buf[at + HEADER.size : at + HEADER.size + name_len]).decode("utf-8", "replace")
        extra = bytes(buf[at + HEADER.size + name_len : at + HEADER.size + name_len + extra_len])
        if csize == 0xFFFFFFFF and not flags & 0x08:  # zip64: the size is in the extra field
            csize = _zip64_compressed_size(extra)
            if csize is None:
                self._finish_opaque(self._pos)
                return False
        npy: tuple[int, int, int] | None = None
        if not flags & 0x08 and method == 0 and name.endswith(".npy"):  # an .npz member
            here = data_start - offset
            stop = min(end, data_start + csize) - offset
            known = _npy_header_end(buf, here, stop, complete=data_start + csize <= end)
            if known is None:
                return False  # its header is not all here yet
            npy = npy_layout(buf[here : here + known]) if known else None
        self.regions.append(Region(self._pos, data_start, 0))
        if npy is not None and npy[0] + npy[1] <= csize:
            array_start = data_start + npy[0]
            array_end = array_start + npy[1]
            self.regions.append(Region(data_start, array_start, 0))
            if array_end > array_start:
                self.regions.append(Region(array_start, array_end, npy[2], _member(name)))
            self._close(array_end, data_start + csize, "", 0)
            return True
        if not flags & 0x08:  # sizes in the header: no descriptor to look for
            self._close(data_start, data_start + csize, name, 0)
            return True
        match = _DATA_ENTRY.search(name)
        size = self._layout.get(match.group(1), (0, None))[1] if match else None
        self._open = _Entry(data_start, name, _has_zip64(extra), size)
        self._pos = self._scanned = data_start
        return True

    def _data(self, buf: memoryview, offset: int, end: int) -> bool:
        assert self._open is not None
        entry = self._open
        descriptor_len = 24 if entry.zip64 else 16
        if entry.size is not None:  # data.pkl said how long: the descriptor must be there
            stop = entry.start + entry.size
            if end < stop + descriptor_len:
                return False
            at = stop - offset
            self._open = None
            if buf[at : at + 4] != DESCRIPTOR or _descriptor_size(buf, at, entry.zip64) != (
                entry.size
            ):
                self._close(entry.start, stop, entry.name, 0)
                self._finish_opaque(stop)  # not the layout data.pkl promised
                return False
            self._close(entry.start, stop, entry.name, descriptor_len)
            return True
        data = bytes(buf[self._scanned - offset :])  # bytes.find: the fast search
        found = -1
        search_from = 0
        while (hit := data.find(DESCRIPTOR, search_from)) >= 0:
            if _descriptor_size(data, hit, entry.zip64) == self._scanned + hit - entry.start:
                found = self._scanned + hit
                break
            search_from = hit + 1
        is_pickle = entry.name.endswith("data.pkl")
        if is_pickle and len(self._pickle) < MAX_PICKLE_BYTES:
            upto = found if found >= 0 else max(self._scanned, end - 24)
            self._pickle += data[: upto - self._scanned]
        if found < 0:
            self._scanned = max(self._scanned, end - 24)
            return False
        if is_pickle:
            self._layout = storage_layout(bytes(self._pickle))
        self._open = None
        self._close(entry.start, found, entry.name, descriptor_len)
        return True

    def _close(self, start: int, stop: int, name: str, descriptor_len: int) -> None:
        if stop > start:
            self.regions.append(Region(start, stop, self._width(name), _member(name)))
        if descriptor_len:
            self.regions.append(Region(stop, stop + descriptor_len, 0))
        self._pos = stop + descriptor_len

    def _finish_opaque(self, start: int) -> None:
        self.regions.append(Region(start, None, 0))
        self._done = True


def _has_zip64(extra: bytes) -> bool:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            return True
        pos += 4 + size
    return False


def _descriptor_size(buf: bytes | memoryview, hit: int, zip64: bool) -> int:
    """The compressed-size field of a descriptor at ``buf[hit]`` (-1 if cut off)."""
    fmt, at = ("<Q", hit + 8) if zip64 else ("<I", hit + 8)
    need = at + struct.calcsize(fmt)
    if need > len(buf):
        return -1
    size: int = struct.unpack_from(fmt, buf, at)[0]
    return size


def _member(name: str) -> str:
    """An entry's name inside the archive's folder, which torch.save names after the
    file: the same storage keeps its name across checkpoints saved under any name."""
    return name.partition("/")[2] or name


def _zip64_compressed_size(extra: bytes) -> int | None:
    """The compressed size from a local header's zip64 extra field (uncompressed size
    first, then compressed size), or None if there is none."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001 and size >= 16:
            compressed: int = struct.unpack_from("<Q", extra, pos + 12)[0]
            return compressed
        pos += 4 + size
    return None


def _npy_header_end(buf: memoryview, start: int, stop: int, complete: bool) -> int | None:
    """How many bytes from ``buf[start]`` the .npy header takes (0: not an .npy blob),
    or None when ``buf[start:stop]`` is too short to tell (``complete``: it is all
    of the entry, so too short means not an .npy blob)."""
    if stop - start < 12:
        return 0 if complete else None
    if bytes(buf[start : start + 6]) != NPY_MAGIC:
        return 0
    fmt, fixed = ("<H", 10) if buf[start + 6] == 1 else ("<I", 12)
    length: int = fixed + struct.unpack_from(fmt, buf, start + 8)[0]
    if length > MAX_NPY_HEADER + 12:
        return 0
    if stop - start >= length:
        return length
    return 0 if complete else None
