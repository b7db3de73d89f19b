"""Write one small golden store with whichever ``ckptstore`` is importable.

Run it with a past revision's tree first on ``PYTHONPATH`` (README.md here says
how); it uses only the public API that every revision since the first has
(``CheckpointStore.open``, ``put``, ``delete``, ``gc``, ``list``, ``open_reader``,
and ``settle`` where it exists), so one script writes the stores of every
format version. It writes the store as ``store.tar.gz`` and beside it ``expected.json``: each
checkpoint's fields and the sha256 of its bytes, the catalog's schema version
and the codec ids of its blocks, which ``tests/test_golden.py`` checks against
the current code.

    python tests/golden/make_golden.py OUT_DIR --revision REV [--expect-root TREE]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import io
import json
import sqlite3
import struct
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import ckptstore
from ckptstore import CheckpointStore, StoreConfig

START_TIME = 1_700_000_000.0
# Small blocks keep each store near 100 KB; a tensor block of 32 KiB holds enough
# elements for codec 7's exponent groups (2**11 elements each at least, and N(0,1)
# float32 makes two only from about 8192) and for a Huffman key frame (1024 keys).
CHUNKER = {"min_size": 4096, "avg_size": 16384, "max_size": 65536, "tensor_block_bytes": 32768}
# Modules that held codec 7's ``huffman_frame`` (its key-plane frames), newest first.
HUFFMAN_MODULES = ("ckptstore.store.codecs.registry", "ckptstore.store.codecs")
RECORD_FIELDS = (
    "job_id",
    "type",
    "name",
    "description",
    "epoch",
    "step",
    "metrics",
    "status",
    "size_bytes",
    "created_at",
)


class Clock:
    """A clock that moves only when told, so created_at and GC grace are repeatable."""

    def __init__(self) -> None:
        self.now = START_TIME

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def store_config() -> StoreConfig:
    """Small blocks and few workers, with only the fields this revision's StoreConfig has."""
    fields = {f.name: f for f in dataclasses.fields(StoreConfig)}
    chunker_type = type(fields["chunker"].default)
    wanted: dict[str, Any] = {
        "chunker": chunker_type(**CHUNKER),
        "workers": 2,
        "gc_grace_s": 60.0,
        "lease_ttl_s": 60.0,
    }
    return StoreConfig(**{name: value for name, value in wanted.items() if name in fields})


def count_key_frames() -> dict[str, int]:
    """Counts of codec 7 key planes written as Huffman-only frames and left to zstd
    (``huffman_frame`` returned None), where this revision has _huffman.c."""
    counts = {"huffman": 0, "zstd": 0}
    lock = threading.Lock()
    for name in HUFFMAN_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        original = getattr(module, "huffman_frame", None)
        if original is None:
            continue

        def counted(keys: Any, _original: Callable[[Any], Any] = original) -> Any:
            frame = _original(keys)
            with lock:
                counts["huffman" if frame is not None else "zstd"] += 1
            return frame

        module.huffman_frame = counted
        return counts
    return {}


# -- data ---------------------------------------------------------------------
def bf16(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, truncated."""
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def safetensors_bytes(tensors: dict[str, tuple[str, np.ndarray]]) -> bytes:
    """A safetensors file: a length-prefixed JSON header, then the tensors' bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "golden"}}
    offset, blobs = 0, []
    for name, (dtype, array) in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def torch_zip_bytes(rng: np.random.Generator) -> bytes | None:
    """A torch.save archive of a small state dict, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    state = {
        "layer.weight": torch.from_numpy(rng.standard_normal((32, 64)).astype(np.float32)),
        "layer.bias": torch.from_numpy(rng.standard_normal(64).astype(np.float32)),
        "step": torch.tensor(7),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def drift(rng: np.random.Generator, values: np.ndarray, fraction: float) -> np.ndarray:
    """``values`` with a few elements nudged, as one training step leaves most weights."""
    out = values.copy()
    picked = rng.random(values.shape) < fraction
    out[picked] += rng.standard_normal(int(picked.sum())).astype(values.dtype) * 1e-3
    return out


# -- the store ----------------------------------------------------------------
def write_store(root: Path, clock: Clock, work: Path) -> dict[str, bytes]:
    """Fill the store at ``root``; returns the bytes put, by checkpoint id."""
    rng = np.random.default_rng(20261206)
    put: dict[str, bytes] = {}
    with CheckpointStore.open(root, config=store_config(), clock=clock) as store:

        def save(job: str, data: bytes, *, path: str | None = None, **fields: Any) -> str:
            clock.advance(1.0)
            source: Any = data
            if path is not None:  # a file on disk, as a trainer hands it over
                source = work / path
                source.write_bytes(data)
            record = store.put(job, source, **fields)
            put[record.checkpoint_id] = data
            return record.checkpoint_id

        # pretrain: slowly changing N(0,1) float32 and bfloat16 tensors, so each
        # checkpoint's blocks are whole (codec 7, Huffman key frames) and its
        # parent's become deltas on them, three deep; a constant-exponent tensor
        # (codec 4, one exponent group) that every checkpoint shares
        weights = rng.standard_normal(8192).astype(np.float32)
        halves = rng.standard_normal(16384).astype(np.float32)
        ones = (1.0 + rng.random(2048)).astype(np.float32)
        # without deltas (no ``settle`` yet) more epochs only repeat whole blocks
        losses = (0.9, 0.7, 0.5, 0.6) if hasattr(store, "settle") else (0.9, 0.7)
        for epoch, loss in enumerate(losses, start=1):
            weights = drift(rng, weights, 0.02)
            halves = drift(rng, halves, 0.02)
            data = safetensors_bytes(
                {
                    "w": ("F32", weights.reshape(64, 128)),
                    "h": ("BF16", bf16(halves)),
                    "ones": ("F32", ones),
                    "step": ("I64", np.array([epoch * 100], np.int64)),
                }
            )
            metrics = {"validationLoss": loss, "trainLoss": loss + 0.125}
            save(
                "pretrain",
                data,
                path="model.safetensors",
                epoch=epoch,
                step=epoch * 100,
                metrics=metrics,
            )
            settle(store)  # the best copy follows the lowest validationLoss

        # finetune: a torch zip archive and an .npy array, manual and final types
        archive = torch_zip_bytes(rng)
        if archive is not None:
            save("finetune", archive, type="manual", name="before eval", step=5)
        table = rng.standard_normal((16, 128)).astype(np.float32)
        save("finetune", npy_bytes(table), path="table.npy", type="final", description="done")

        # misc: opaque bytes that zstd shrinks (codec 1), noise it cannot (codec 0),
        # and raw float32 bytes with no header (byte planes of a guessed width)
        text = b"".join(b"step %d loss %.4f lr 3e-4\n" % (i, 1 / (i + 1)) for i in range(600))
        noise = rng.integers(0, 256, 6144, dtype=np.uint8).tobytes()
        floats = rng.standard_normal(2048).astype(np.float32).tobytes()
        save("misc", text + noise + floats, epoch=0, metrics={"accuracy": 0.5})
        save("misc", noise[:5000], tenant="acme", step=1)

        # a deleted checkpoint with blocks of its own, and a GC past the grace period
        doomed = save("misc", rng.standard_normal(4096).astype(np.float32).tobytes(), epoch=1)
        clock.advance(1.0)
        store.delete(doomed)
        del put[doomed]
        clock.advance(3600.0)
        store.gc()
        settle(store)
    return put


def settle(store: CheckpointStore) -> None:
    """Wait for the background rebases, where this revision has them."""
    if hasattr(store, "settle"):
        store.settle()


def describe(root: Path, put: dict[str, bytes], clock: Clock) -> dict[str, Any]:
    """Every checkpoint as the store lists it, checked against the bytes put."""
    jobs: dict[str, dict[str, Any]] = {}
    with CheckpointStore.open(root, config=store_config(), clock=clock) as store:
        for tenant, job in (("", "pretrain"), ("", "finetune"), ("", "misc"), ("acme", "misc")):
            entries: dict[str, Any] = {}
            for record in store.list(job, tenant=tenant, limit=None, order="asc").checkpoints:
                with store.open_reader(record.checkpoint_id, tenant=tenant) as reader:
                    data = reader.read()
                expected = put.get(record.checkpoint_id)
                if expected is not None and data != expected:
                    raise SystemExit(f"checkpoint {record.checkpoint_id} reads back wrong")
                entry = {name: getattr(record, name) for name in RECORD_FIELDS}
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                if len(data) != record.size_bytes:
                    raise SystemExit(f"checkpoint {record.checkpoint_id}: size mismatch")
                entries[record.checkpoint_id] = entry
            jobs[f"{tenant}/{job}"] = {"tenant": tenant, "job": job, "checkpoints": entries}
        report = store.verify(read_data=True)
        if not report.ok:
            raise SystemExit(f"the new store does not verify: {report.findings}")
    return jobs


def catalog_facts(root: Path) -> dict[str, Any]:
    conn = sqlite3.connect(root / "catalog.sqlite")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        rows = conn.execute("SELECT codec, COUNT(*) FROM blocks GROUP BY codec ORDER BY codec")
        codecs = {str(codec): count for codec, count in rows}
    finally:
        conn.close()  # the last connection: SQLite folds the WAL back into the file
    return {"schema_version": version, "codec_blocks": codecs}


def write_tarball(root: Path, target: Path) -> None:
    """``root`` as ``store/`` in a gzipped tarball, entries in name order with fixed
    owners and times (an SQLite catalog is mostly empty pages: it shrinks tenfold)."""

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = int(START_TIME)
        return info

    with tarfile.open(target, "w:gz", compresslevel=9) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, f"store/{path.relative_to(root)}", recursive=False, filter=plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for store.tar.gz and expected.json")
    parser.add_argument("--revision", required=True, help="the git revision being run")
    parser.add_argument("--expect-root", type=Path, help="fail unless ckptstore comes from here")
    args = parser.parse_args()
    package = Path(ckptstore.__file__).resolve().parent
    if args.expect_root and package != (args.expect_root.resolve() / "ckptstore"):
        raise SystemExit(f"ckptstore imported from {package}, not {args.expect_root}")
    if (args.out / "store.tar.gz").exists():
        raise SystemExit(f"{args.out} holds a store: golden stores are written once")
    key_frames = count_key_frames()
    clock = Clock()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "store"
        (Path(work) / "files").mkdir()
        put = write_store(root, clock, Path(work) / "files")
        jobs = describe(root, put, clock)
        facts = catalog_facts(root)
        leftovers = sorted(p.name for p in root.glob("catalog.sqlite-*"))
        if leftovers:
            raise SystemExit(f"the catalog was left with {leftovers}: the store is not whole")
        args.out.mkdir(parents=True, exist_ok=True)
        write_tarball(root, args.out / "store.tar.gz")
    expected = {
        "revision": args.revision,
        "python": sys.version.split()[0],
        **facts,
        "key_frames": key_frames,
        "jobs": jobs,
    }
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
