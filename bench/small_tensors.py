"""Files of many small tensors: ingest speed and stored ratio, another revision against
the working tree, runs interleaved.

    python -m bench.small_tensors [--rev main] [--tensors 50000] [--runs 3]
        [--group-bytes 65536 1048576]

Two safetensors files of ``--tensors`` float32 tensors of 256 to 2,048 elements each
(1 to 8 KiB; norms, biases, small adapters), the second a later save of the first:
30% of its tensors (chosen at random) took a small training step, the rest are
unchanged. For REV, for the working tree, and for the working tree with tensor groups
of each ``--group-bytes`` size, in turn (the order reversed in even runs), each in a
fresh process started in its own tree (as bench.ab does), on a new local store, the
two files are put as one job, each put timed once the previous rebase is done:

- put MB/s: the first file (a store with nothing in it yet);
- second save, put MB/s: the second file;
- two saves, stored ratio: both files' bytes over the store's stored bytes, every
  rebase done; second save, stored MB: what the second save added to the store.

Also the blocks of the first file as each tree's chunker cuts it. The report:
bench/results/<date>-<host>-small-tensors.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.ab import ROOT, checkout
from bench.common import MB, WORK, save_report

CHANGED = 0.3  # of the second save's tensors, changed
STEP = 1e-3  # a changed tensor's relative step, as one optimizer step makes


def write_pair(directory: Path, count: int, seed: int = 0) -> tuple[Path, Path]:
    """The two saves (``save-1.safetensors``, ``save-2.safetensors``) of ``count``
    small float32 tensors; made once per count."""
    first, second = directory / "save-1.safetensors", directory / "save-2.safetensors"
    if first.exists() and second.exists():
        return first, second
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = rng.integers(256, 2049, count)
    names = [f"b{i // 8}.{('norm', 'bias', 'scale', 'gate')[i % 4]}{i % 8}" for i in range(count)]
    weights = [(rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)) for n in sizes]
    changed = rng.random(count) < CHANGED
    later = [
        w + (rng.standard_normal(len(w), dtype=np.float32) * np.float32(STEP) * w) if c else w
        for w, c in zip(weights, changed, strict=True)
    ]
    _write_safetensors(first, names, weights)
    _write_safetensors(second, names, later)
    return first, second


def _write_safetensors(path: Path, names: list[str], arrays: list[np.ndarray]) -> None:
    header: dict[str, object] = {}
    offset = 0
    for name, array in zip(names, arrays, strict=True):
        header[name] = {
            "dtype": "F32",
            "shape": [len(array)],
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for array in arrays:
            out.write(array.astype("<f4").tobytes())


# Run in a fresh process in the tree under test: two saves as one job on a new store,
# each put timed with the previous rebase done (as a training loop that saves now and
# then waits), then the blocks of the first file as that tree's chunker cuts it.
# GROUP_BYTES < 0: the tree's default chunker (a tree without tensor groups has no
# such parameter).
_CHILD = """
import dataclasses, json, sys, time
from concurrent.futures import ThreadPoolExecutor
from ckptstore import CheckpointStore
from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER
from ckptstore.store.chunking.fingerprint import fingerprint
from ckptstore.store.context import StoreConfig
root, group, first, second = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
params = DEFAULT_CHUNKER
if group >= 0:
    params = dataclasses.replace(DEFAULT_CHUNKER, tensor_group_bytes=group)
out = {}
with CheckpointStore.open(root, config=StoreConfig(chunker=params)) as store:
    for i, path in enumerate((first, second), 1):
        store.settle()
        start = time.perf_counter()
        record = store.put("small", path, epoch=i)
        out[f"put{i}_seconds"] = time.perf_counter() - start
        out[f"logical{i}"] = record.size_bytes
        store.settle()
        out[f"stored{i}"] = store.stats().stored_bytes
with ThreadPoolExecutor(2) as pool:
    blocks = fingerprint(first, params, pool)
out["blocks"] = len(blocks)
out["smallest"] = min(n for _, n in blocks)
print(json.dumps(out))
"""


def _child(code: Path, *args: str) -> dict[str, float]:
    """``_CHILD`` in a fresh process in ``code``'s tree (bench.ab)."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_side(code: Path, group: int, first: Path, second: Path, store: Path) -> dict[str, float]:
    """One run of every figure with the code in ``code`` (tensor groups of ``group``
    bytes; < 0: its default)."""
    shutil.rmtree(store, ignore_errors=True)
    got = _child(code, str(store), str(group), str(first), str(second))
    shutil.rmtree(store, ignore_errors=True)
    return {
        "put MB/s": got["logical1"] / MB / got["put1_seconds"],
        "second save, put MB/s": got["logical2"] / MB / got["put2_seconds"],
        "two saves, stored ratio": (got["logical1"] + got["logical2"]) / got["stored2"],
        "second save, stored MB": (got["stored2"] - got["stored1"]) / MB,
        "blocks per file": got["blocks"],
        "smallest block bytes": got["smallest"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rev", default="main", help="the git revision to compare with")
    parser.add_argument("--tensors", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--group-bytes",
        type=int,
        nargs="*",
        default=[64 * 1024, 1024 * 1024],
        help="also run the working tree with tensor groups of these sizes",
    )
    args = parser.parse_args()
    commit, tree = checkout(args.rev)
    first, second = write_pair(WORK / f"small-tensors-{args.tensors}", args.tensors)
    store = (WORK / "small-tensors-store").resolve()
    sides = [("old", tree, -1), ("new", ROOT, -1)]
    sides += [(f"new, {g // 1024} KiB groups", ROOT, g) for g in args.group_bytes]
    found: dict[str, dict[str, list[float]]] = {side: {} for side, _, _ in sides}
    for run in range(args.runs):
        for side, code, group in sides if run % 2 == 0 else sides[::-1]:
            print(f"run {run + 1}: {side} ...", flush=True)
            for label, value in run_side(code, group, first, second, store).items():
                found[side].setdefault(label, []).append(value)
    lines = _report(args.rev, commit, args.tensors, first.stat().st_size, found, args.runs)
    md = save_report(
        "small-tensors",
        "Files of many small tensors",
        lines,
        {"rev": commit, "tensors": args.tensors, **found},
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


def _report(rev: str, commit: str, tensors: int, size: int, found: dict, runs: int) -> list[str]:
    others = [side for side in found if side not in ("old", "new")]
    lines = [
        f"A safetensors file of {tensors:,} float32 tensors of 1-8 KiB ({size / MB:,.1f} MB),"
        f" then a second save of it with {CHANGED:.0%} of the tensors changed. `{rev}`"
        f" ({commit[:12]}, old) against the working tree (new; also with other group"
        f" sizes), {runs} runs each, interleaved, each in a fresh process on a new local"
        " store; medians, then every run. The machine is shared and noisy: compare"
        " within this report, not across reports.",
        "",
        "| figure | old | new | new / old | "
        + "".join(f"{side} | " for side in others)
        + "old runs | new runs |",
        "|---|---:|---:|---:|" + "---:|" * len(others) + "---|---|",
    ]
    for label in found["old"]:
        old, new = found["old"][label], found["new"][label]
        a, b = statistics.median(old), statistics.median(new)
        extra = "".join(f"{statistics.median(found[side][label]):,.2f} | " for side in others)
        lines.append(
            f"| {label} | {a:,.2f} | {b:,.2f} | {b / a:.2f} | {extra}"
            f"{' / '.join(f'{v:,.2f}' for v in old)} | {' / '.join(f'{v:,.2f}' for v in new)} |"
        )
    return lines


if __name__ == "__main__":
    main()
