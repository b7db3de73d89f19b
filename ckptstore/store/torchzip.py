"""Streaming segmentation of PyTorch zip checkpoints (``torch.save``), pure and without I/O.

Entries are found from their local headers as the stream goes by. torch writes
them with data descriptors (sizes 0 in the header), so an entry ends where a
descriptor ``PK\\x07\\x08`` follows whose size field equals the bytes since the
entry's data start. The element width of each ``data/<key>`` storage comes
from ``data.pkl``, read with pickletools (never executed).
"""

from __future__ import annotations

import pickletools
import re
import struct

from ckptstore.store.segments import Region

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


def storage_widths(pickle_bytes: bytes) -> dict[str, int]:
    """Storage key -> element width, from the persistent ids in a torch data.pkl."""
    widths: dict[str, int] = {}
    recent: list[tuple[str, str]] = []  # strings and globals, in the order pushed
    memo: dict[int, tuple[str, str]] = {}
    try:
        for op, arg, _ in pickletools.genops(pickle_bytes):
            name = op.name
            if name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8"):
                recent.append(("s", arg))
            elif name == "GLOBAL":
                recent.append(("g", arg.split(" ")[-1]))
            elif name == "STACK_GLOBAL" and len(recent) >= 2:
                recent[-2:] = [("g", recent[-1][1])]
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and recent:
                memo[int(arg)] = recent[-1]
            elif name == "MEMOIZE" and recent:
                memo[len(memo)] = recent[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(int(arg), ("?", "")))
            elif name == "BINPERSID":
                _record(recent, widths)
    except (ValueError, IndexError, KeyError):
        pass  # a pickle we cannot read fully: keep what was found
    return widths


def _record(recent: list[tuple[str, str]], widths: dict[str, int]) -> None:
    """At a persistent load: ... ('s','storage') ('g', type) ('s', key) ('s', location)."""
    for i in range(len(recent) - 1, -1, -1):
        if recent[i] == ("s", "storage") and i + 2 < len(recent):
            kind, storage = recent[i + 1]
            key_kind, key = recent[i + 2]
            if kind == "g" and key_kind == "s" and storage in STORAGE_WIDTHS:
                widths[key] = STORAGE_WIDTHS[storage]
            return


class ZipSegmenter:
    """Finds the regions of a torch zip stream as its bytes arrive."""

    def __init__(self) -> None:
        self.regions: list[Region] = []
        self._pos = 0  # next local header, or the data start of the open entry
        self._open: tuple[int, str, bool] | None = None  # (data start, name, zip64)
        self._scanned = 0  # data bytes already searched for a descriptor
        self._pickle = bytearray()
        self._widths: dict[str, int] = {}
        self._done = False

    @staticmethod
    def matches(head: memoryview) -> bool:
        return bytes(head[:4]) == LOCAL

    def open_region(self) -> Region | None:
        """The entry whose end is not found yet, as a region without an end."""
        if self._open is None:
            return None
        start, name, _ = self._open
        match = _DATA_ENTRY.search(name)
        width = self._widths.get(match.group(1), 0) if match else 0
        return Region(start, None, width, _member(name))

    def advance(self, buf: memoryview, offset: int, final: bool) -> int:
        """Read ``buf`` (stream bytes from ``offset``); returns how far regions are known."""
        end = offset + len(buf)
        data = bytes(buf)  # one copy per buffer: bytes.find is the fast descriptor search
        while not self._done:
            if self._open is None:
                if not self._header(data, offset, end):
                    break
            elif not self._data(data, offset, end):
                break
        if self._done:
            return end
        if final:
            self._finish_opaque(self._pos)
            return end
        if self._open is not None:
            return max(self._pos, end - 24)  # a descriptor may straddle the buffer end
        return self._pos

    def _header(self, buf: bytes, offset: int, end: int) -> bool:
        at = self._pos - offset
        if end - self._pos < 4:
            return False
        if buf[at : at + 4] != LOCAL:
            self._finish_opaque(self._pos)  # the central directory, or not a zip we follow
            return False
        if end - self._pos < HEADER.size:
            return False
        _, _, flags, _, _, _, _, csize, _, name_len, extra_len = HEADER.unpack_from(buf, at)
        data_start = self._pos + HEADER.size + name_len + extra_len
        if data_start > end:
            return False
        name = buf[at + HEADER.size : at + HEADER.size + name_len].decode("utf-8", "replace")
        extra = buf[at + HEADER.size + name_len : at + HEADER.size + name_len + extra_len]
        self.regions.append(Region(self._pos, data_start, 0))
        if not flags & 0x08:  # sizes in the header: no descriptor to look for
            self._close(data_start, data_start + csize, name, 0)
            return True
        self._open = (data_start, name, _has_zip64(extra))
        self._pos = self._scanned = data_start
        return True

    def _data(self, data: bytes, offset: int, end: int) -> bool:
        assert self._open is not None
        start, name, zip64 = self._open
        raw = data[self._scanned - offset :] if name.endswith("data.pkl") else b""
        found = -1
        search_from = self._scanned
        while True:
            hit = data.find(DESCRIPTOR, search_from - offset)
            if hit < 0:
                break
            hit_abs = offset + hit
            size = _descriptor_size(data, hit, zip64)
            if size == hit_abs - start:
                found = hit_abs
                break
            search_from = hit_abs + 1
        if name.endswith("data.pkl") and len(self._pickle) < MAX_PICKLE_BYTES:
            upto = found if found >= 0 else max(self._scanned, end - 24)
            self._pickle += raw[: upto - self._scanned]
        if found < 0:
            self._scanned = max(self._scanned, end - 24)
            return False
        descriptor_len = 24 if zip64 else 16
        if name.endswith("data.pkl"):
            self._widths = storage_widths(bytes(self._pickle))
        self._open = None
        self._close(start, found, name, descriptor_len)
        return True

    def _close(self, start: int, stop: int, name: str, descriptor_len: int) -> None:
        match = _DATA_ENTRY.search(name)
        width = self._widths.get(match.group(1), 0) if match else 0
        if stop > start:
            self.regions.append(Region(start, stop, width, _member(name)))
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


def _descriptor_size(buf: bytes, hit: int, zip64: bool) -> int:
    """The compressed-size field of a descriptor at ``buf[hit]`` (-1 if cut off)."""
    fmt, at = ("<Q", hit + 8) if zip64 else ("<I", hit + 8)
    need = at + struct.calcsize(fmt)
    if need > len(buf):
        return -1
    return struct.unpack_from(fmt, buf, at)[0]


def _member(name: str) -> str:
    """An entry's name inside the archive's folder, which torch.save names after the
    file: the same storage keeps its name across checkpoints saved under any name."""
    return name.partition("/")[2] or name
