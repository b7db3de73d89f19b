"""What the SHA-256 of every file costs ``put``: ingest with it and without it.

    python -m bench.sha256 [--size-mb 512] [--repeat 3]

The same unique float32 data, stored as one file and as a folder of eight,
into a fresh store each time; runs with and without the digest alternate, and
each figure is the best of ``--repeat``. "Without" replaces the ingest's
SHA-256 with one that does nothing (the engine has no switch: every checkpoint
carries its digest). Also: hashlib's SHA-256 alone, one thread.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from bench.common import MB, WORK, float32_weights, mb_per_s, save_report, write_file
from ckptstore import CheckpointStore
from ckptstore.store import ingest


class _NoDigest:
    def update(self, data: object) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * 64


@contextmanager
def digest(enabled: bool) -> Iterator[None]:
    if enabled:
        yield
        return
    with mock.patch.object(ingest, "hashlib", SimpleNamespace(sha256=_NoDigest)):
        yield


def timed_put(source: Path, size: int, enabled: bool) -> float:
    root = WORK / "sha256-store"
    shutil.rmtree(root, ignore_errors=True)
    with CheckpointStore.open(root) as store, digest(enabled):
        start = time.perf_counter()
        store.put("job", source)
        seconds = time.perf_counter() - start
    shutil.rmtree(root, ignore_errors=True)
    return size / MB / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mb * MB
    one = write_file(WORK / "sha256-one.bin", float32_weights(size, seed=1))
    folder = WORK / "sha256-folder"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = one.read_bytes()
    for i in range(8):
        part = data[i * size // 8 : (i + 1) * size // 8]
        (folder / f"model-{i + 1:05d}-of-00008.bin").write_bytes(part)
    sha_1t = mb_per_s(size, lambda buf=data: hashlib.sha256(buf).digest(), 2)
    data = b""
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, source in (("file", one), ("folder", folder)):
            for enabled in (True, False):
                key = f"{name}_{'sha256' if enabled else 'none'}"
                best[key] = max(best.get(key, 0.0), timed_put(source, size, enabled))
    lines = [
        f"Unique float32 data, {args.size_mb} MB, best of {args.repeat}, fresh store each run.",
        "",
        "| put of | with SHA-256 | without | with / without |",
        "|---|---:|---:|---:|",
    ]
    for name in ("file", "folder"):
        on, off = best[f"{name}_sha256"], best[f"{name}_none"]
        lines.append(f"| {name} | {on:,.0f} MB/s | {off:,.0f} MB/s | {on / off:.3f} |")
    lines += ["", f"hashlib SHA-256 alone, one thread: {sha_1t:,.0f} MB/s."]
    report = save_report(
        "sha256", "SHA-256 of every file: its cost on put", lines, best | {"sha256_1t": sha_1t}
    )
    print(report.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    one.unlink()


if __name__ == "__main__":
    main()
