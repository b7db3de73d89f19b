"""The tools users compare ckptstore with, run on the same checkpoint files.

Each peer ingests a corpus's files in save order, the way it would be used
for a stream of checkpoints, and reports the bytes it stored and its wall
time. A peer whose tool is not installed is skipped (``make bench-peers``
installs them all: restic, borg and zstd from the OS packages, ZipNN and
z4ai from PyPI).

- store peers: restic (repository v2, zstd auto), borg (``zstd,3``);
- per-file codecs: ``zstd -3`` (and ``-T2``, for its speed on two cores);
  ``zstd -3 --patch-from`` the previous file;
  ZipNN per file and in its delta mode against the previous file (same
  length only: ZipNN refuses others, which are then compressed alone);
  z4ai, the first file compressed and each later one as ``compress_delta``
  against the previous (the same rule for lengths).

The store peers read the last file back (timed: the restore speed the newest
checkpoint's is held against), and the codec peers' output for the last file
is decoded again; each is compared with the file. A peer that does not give
it back is reported as such and left out of every comparison (ZipNN 0.5.4
from PyPI fails this here, on plain float32 and bfloat16 buffers too).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import WORK

# ZipNN's and z4ai's names for each corpus's dominant element type
DTYPES = {
    "pretrain": ("float32", "fp32"),
    "finetune-frozen": ("float32", "fp32"),
    "lora": ("float32", "fp32"),
    "bf16": ("bfloat16", "bf16"),
    "opaque": ("float32", None),
    "opaque-scattered": ("float32", None),
}


@dataclass(frozen=True)
class PeerResult:
    stored_bytes: int
    seconds: float
    note: str = ""
    round_trip: bool = True  # False: the last file did not decode back; ratio not comparable
    restore_seconds: float | None = None  # reading the last file back (store peers)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **(env or {})})


def restic(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    if shutil.which("restic") is None:
        return None
    repo = work / "restic"
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    _run(["restic", "-r", str(repo), "init", "--repository-version", "2"], env)
    start = time.perf_counter()
    for path in files:
        _run(
            [
                "restic",
                "-r",
                str(repo),
                "backup",
                "-q",
                "--compression",
                "auto",
                os.path.abspath(path),
            ],
            env,
        )
    seconds = time.perf_counter() - start
    last = os.path.abspath(files[-1])
    back, restore_seconds = _read_back(["restic", "-r", str(repo), "dump", "latest", last], env)
    return PeerResult(
        tree_bytes(repo),
        seconds,
        round_trip=back == files[-1].read_bytes(),
        restore_seconds=restore_seconds,
    )


def borg(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    if shutil.which("borg") is None:
        return None
    repo = work / "borg"
    env = {
        "BORG_BASE_DIR": str(work / "borg-home"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }
    _run(["borg", "init", "--encryption", "none", str(repo)], env)
    start = time.perf_counter()
    for i, path in enumerate(files):
        _run(
            ["borg", "create", "--compression", "zstd,3", f"{repo}::ck{i}", os.path.abspath(path)],
            env,
        )
    seconds = time.perf_counter() - start
    last = os.path.abspath(files[-1]).lstrip("/")  # borg stores paths without the root
    archive = f"{repo}::ck{len(files) - 1}"
    back, restore_seconds = _read_back(["borg", "extract", "--stdout", archive, last], env)
    return PeerResult(
        tree_bytes(repo),
        seconds,
        round_trip=back == files[-1].read_bytes(),
        restore_seconds=restore_seconds,
    )


def _read_back(cmd: list[str], env: dict[str, str]) -> tuple[bytes, float]:
    """A store peer's copy of a file, written to its standard output, and the seconds
    that took (ckptstore's restore is timed the same way, writing nowhere)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **env})
    return done.stdout, time.perf_counter() - start


def zstd_files(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    if shutil.which("zstd") is None:
        return None
    start = time.perf_counter()
    for path in files:
        _run(["zstd", "-3", "-q", "-f", str(path), "-o", str(work / f"{path.name}.zst")])
    return PeerResult(tree_bytes(work), time.perf_counter() - start)


def zstd_two_threads(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    """``zstd -3 -T2`` per file: the speed a save is held against."""
    if shutil.which("zstd") is None:
        return None
    start = time.perf_counter()
    for path in files:
        _run(["zstd", "-3", "-T2", "-q", "-f", str(path), "-o", str(work / f"{path.name}.zst")])
    return PeerResult(tree_bytes(work), time.perf_counter() - start)


def zstd_patch_from(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    if shutil.which("zstd") is None:
        return None
    start = time.perf_counter()
    previous: Path | None = None
    for path in files:
        patch = [f"--patch-from={previous}"] if previous else []
        _run(["zstd", "-3", "-q", "-f", *patch, str(path), "-o", str(work / f"{path.name}.zst")])
        previous = path
    return PeerResult(tree_bytes(work), time.perf_counter() - start)


def zipnn_files(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    return _zipnn(files, corpus, delta=False)


def zipnn_delta(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    return _zipnn(files, corpus, delta=True)


def _zipnn(files: list[Path], corpus: str, delta: bool) -> PeerResult | None:
    if importlib.util.find_spec("zipnn") is None:
        return None
    from zipnn import ZipNN

    dtype = DTYPES[corpus][0]
    plain = ZipNN(input_format="byte", bytearray_dtype=dtype)
    deltas = ZipNN(input_format="byte", bytearray_dtype=dtype, delta_compressed_type="byte")
    return _chain(
        files,
        plain.compress,
        plain.decompress,
        (lambda cur, ref: deltas.compress(cur, delta_second_data=ref)) if delta else None,
        lambda blob, ref: deltas.decompress(blob, delta_second_data=ref),
    )


def z4ai(files: list[Path], work: Path, corpus: str) -> PeerResult | None:
    if importlib.util.find_spec("z4ai") is None:
        return None
    import z4ai as codec

    dtype = DTYPES[corpus][1]
    return _chain(
        files,
        lambda data: codec.compress(data, dtype=dtype),
        codec.decompress,
        lambda cur, ref: codec.compress_delta(cur, ref, dtype=dtype),
        codec.decompress_delta,
    )


def _chain(
    files: list[Path],
    compress: Callable[[bytes], bytes],
    decompress: Callable[[bytes], bytes],
    compress_delta: Callable[[bytes, bytes], bytes] | None,
    decompress_delta: Callable[[bytes, bytes], bytes],
) -> PeerResult:
    """A codec peer over the files: each compressed as a delta against the previous
    one where ``compress_delta`` is given and the lengths match (both codecs refuse
    others), else alone; the last output is decoded again and compared."""
    stored = alone = 0
    previous: bytes | None = None
    last: tuple[bytes, bytes | None] = (b"", None)
    start = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        if compress_delta and previous is not None and len(previous) == len(data):
            last = (compress_delta(data, previous), previous)
        else:
            last = (compress(data), None)
            alone += previous is not None
        stored += len(last[0])
        previous = data
    seconds = time.perf_counter() - start
    out, base = last
    back = decompress_delta(out, base) if base is not None else decompress(out)
    note = (
        f"{alone} of {len(files) - 1} later files compressed alone"
        if compress_delta and alone
        else ""
    )
    return PeerResult(stored, seconds, note, round_trip=bytes(back) == previous)


PEERS: dict[str, Callable[[list[Path], Path, str], PeerResult | None]] = {
    "restic": restic,
    "borg zstd,3": borg,
    "zstd -3": zstd_files,
    "zstd -3 -T2": zstd_two_threads,
    "zstd -3 --patch-from": zstd_patch_from,
    "ZipNN": zipnn_files,
    "ZipNN delta": zipnn_delta,
    "z4ai delta": z4ai,
}
STORE_PEERS = ("restic", "borg zstd,3", "zstd -3", "zstd -3 --patch-from")


PEER_TIMEOUT_S = 1800


def run_peers(files: list[Path], corpus: str) -> dict[str, PeerResult]:
    """Every installed peer's result on ``files`` (a corpus in save order).

    Each peer runs in its own process: a codec library that crashes (one did
    here, with a double free) costs its own row, not the report.
    """
    results: dict[str, PeerResult] = {}
    WORK.mkdir(parents=True, exist_ok=True)
    for name in PEERS:
        # the work folder is made and removed here: a peer that crashes cannot clean up
        with tempfile.TemporaryDirectory(prefix="peer-", dir=WORK) as tmp:
            cmd = [sys.executable, "-m", "bench.peers", name, corpus, tmp, *map(str, files)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=PEER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                done = None
        if done is None:
            results[name] = PeerResult(0, PEER_TIMEOUT_S, "timed out", round_trip=False)
            continue
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            results[name] = PeerResult(0, 0.0, f"failed: {reason[:120]}", round_trip=False)
        elif done.stdout.strip():
            results[name] = PeerResult(**json.loads(done.stdout))
    return results


def main() -> None:
    """``python -m bench.peers PEER CORPUS WORK_DIR FILE...``: one peer's result as JSON."""
    name, corpus, work, *paths = sys.argv[1:]
    result = PEERS[name]([Path(p) for p in paths], Path(work), corpus)
    if result is not None:
        print(json.dumps(dataclasses.asdict(result)))


if __name__ == "__main__":
    main()
