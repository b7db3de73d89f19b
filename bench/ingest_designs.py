"""Designs for the ingest of a run of saves, measured by the CPU all their work takes.

    python -m bench.ingest_designs [--corpora pretrain bf16] [--runs N] [--no-peers]

Today a put encodes every new tensor block with the full codec (codec 7) and the
rebase after it decodes the parent's blocks and their counterparts in the new
checkpoint, encodes each parent block as a delta on its counterpart (codec 6),
and decodes the delta once to check it. The alternatives replay the same tensor
blocks with the store's own codecs (``BlockCodec``), one thread, CPU time of that
thread per stage:

- ``today``: as above, with the 32 MiB base cache holding the first 32 MiB of
  the new checkpoint's new blocks (as ``packs/basecache.py`` keeps them).
- ``cheap newest (C)``: the put stores new blocks with a cheap whole encoding C
  (``raw``: the bytes as they are; ``planes``: codec 4, byte planes without the
  exponent grouping); the rebase decodes that, encodes the delta, and encodes a
  block that stays whole with the full codec. Whether a delta pays is judged
  against an estimate of the full codec's size (order-0 entropy of the byte
  planes on a sample), the full codec run only where the delta comes within
  ESTIMATE_MARGIN of it; the last checkpoint is re-encoded with the full codec
  at the end (counted, as "final re-encode").
- ``delta in put``: today's codecs, the delta of each parent block encoded
  during the put while its counterpart's raw bytes are in memory (no base is
  decoded; the parent's block still is).
- ``cheap newest (C), delta in put``: both.
- ``forward K``: each new block stored as a delta on the previous save's block
  of its slot, a whole block (keyframe) every K saves; the previous save's raw
  bytes decoded through their chain (``forward K``) or, as a bound, taken from
  memory (``forward K, previous in memory``). A delta is judged as for the
  cheap newest (the block's whole payload is not known before it is encoded).

Work the designs share (reading and cutting the files, BLAKE3 and SHA-256,
opaque blocks and their deltas, pack writes, the catalog) is not replayed: it
is the real store's CPU for today's design (``bench.corpus_child ingest``,
fresh processes, median) less the replay of today's design, added to every
design's replay. Stored bytes likewise: the real store's less the replay's
tensor bytes, plus each design's. Restore cost: CPU per MiB to decode and hash
the tensor blocks of the newest and of the deepest checkpoint, one thread.

Peers on the same files: ZipNN's delta mode (as bench.peers runs it) and
``zstd -3 -T2`` (CPU and wall), borg's extract of the newest file (CPU).

Writes bench/results/<date>-<host>-ingest-designs.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import MB, WORK, save_report
from bench.corpus import write
from ckptstore import CheckpointStore
from ckptstore.store.codecs.block import BlockCodec, min_delta_len
from ckptstore.store.codecs.estimate import plane_bits
from ckptstore.store.codecs.ids import DELTA_WIDTHS, Codec
from ckptstore.store.context import StoreConfig
from ckptstore.store.ids import block_id
from ckptstore.store.packs.entries import load_block

MIB = 1 << 20
GB = 1_000_000_000
CACHE_BYTES = 32 * MIB  # the store's default base cache
ESTIMATE_MARGIN = 0.6  # a delta below this share of the estimate is kept unchecked
SAMPLE_BYTES = 16 * 1024  # sample of a block the full codec's size is estimated on


@dataclass(frozen=True)
class Block:
    """One tensor block of a checkpoint: its slot, id, element width and bytes."""

    slot: str
    block_id: bytes
    width: int
    raw: bytes


@dataclass
class Stored:
    """How a replayed design stores one block."""

    codec: int
    payload: bytes | memoryview
    base: bytes | None = None  # the base block's id, for a delta
    cheap: bool = False  # written with the cheap encoding, still to be replaced


@dataclass
class Replay:
    """A design's replay: CPU seconds per stage, the blocks as stored at the end."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    stored: dict[bytes, Stored] = field(default_factory=dict)
    put_stages: tuple[str, ...] = ()
    mistakes: int = 0  # deltas kept by the estimate though the full codec was smaller
    mistake_bytes: int = 0
    # (delta payload, estimated full payload, full payload) of each delta judged
    judged: list[tuple[int, float, int]] = field(default_factory=list)

    def timed(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its thread CPU time added to ``stage``."""
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[stage] += time.thread_time() - start


def load_run(paths: list[Path], root: Path) -> tuple[list[list[Block]], float]:
    """Each checkpoint's tensor blocks in put order, ingested with no rebase (every
    block whole), and the CPU seconds of those puts (today's put alone)."""
    shutil.rmtree(root, ignore_errors=True)
    run: list[list[Block]] = []
    config = StoreConfig(delta_max_depth=0)
    with CheckpointStore.open(root, config=config) as store:
        cpu = time.process_time()
        records = [store.put("designs", path, epoch=i) for i, path in enumerate(paths)]
        store.settle()
        put_cpu = time.process_time() - cpu
        catalog, ctx = store.context.catalog, store.context
        for record in records:
            slot_of = {r.block_id: s for s, r in catalog.slots(record.checkpoint_id).items()}
            blocks, seen = [], set()
            for _, rec in catalog.manifest(record.checkpoint_id):
                if rec.block_id in slot_of and rec.block_id not in seen and rec.width:
                    seen.add(rec.block_id)
                    raw = bytes(load_block(ctx, rec))
                    blocks.append(Block(slot_of[rec.block_id], rec.block_id, rec.width, raw))
            run.append(blocks)
    shutil.rmtree(root, ignore_errors=True)
    return run, put_cpu


class Designs:
    """The replays, sharing the store's codecs."""

    def __init__(self) -> None:
        self.full = BlockCodec()
        self.planes = BlockCodec(exponent_group_log=0)

    # -- encodings -----------------------------------------------------------

    def encode_full(self, block: Block) -> Stored:
        codec, payload = self.full.encode(memoryview(block.raw), block.width, aligned=True)
        return Stored(int(codec), bytes(payload))

    def encode_cheap(self, block: Block, cheap: str) -> Stored:
        if cheap == "raw":
            return Stored(int(Codec.RAW), bytes(memoryview(block.raw)), cheap=True)
        codec, payload = self.planes.encode(memoryview(block.raw), block.width)
        return Stored(int(codec), bytes(payload), cheap=True)

    def decode(self, stored: dict[bytes, Stored], bid: bytes, raw_len: int) -> bytes | memoryview:
        """A block's raw bytes, through its chain."""
        entry = stored[bid]
        base = None if entry.base is None else self.decode(stored, entry.base, raw_len)
        return self.full.decode(entry.codec, entry.payload, raw_len, base)

    @staticmethod
    def estimate_full(raw: bytes, width: int) -> float:
        """The full codec's payload size, estimated from the byte planes' order-0 entropy
        on a sample."""
        sample = np.frombuffer(raw, np.uint8)[:SAMPLE_BYTES]
        return plane_bits(sample, width) / 8 * len(raw)

    def delta_or_whole(
        self, replay: Replay, stage: str, x: Block, raw_y: bytes | memoryview, oracle: int
    ) -> Stored:
        """X as a delta on Y where it pays against the estimated full payload, checked
        by a full encode where it comes near; else whole with the full codec."""
        est = replay.timed(stage + "estimate", self.estimate_full, x.raw, x.width)
        enc = replay.timed(
            stage + "delta encode",
            self.full.encode_delta,
            memoryview(x.raw),
            raw_y,
            x.width,
        )
        if enc is not None:
            replay.judged.append((len(enc[1]), est, oracle))
        if enc is not None and len(enc[1]) < ESTIMATE_MARGIN * est:
            replay.timed(stage + "delta check", self.full.decode, enc[0], enc[1], len(x.raw), raw_y)
            if len(enc[1]) > oracle:
                replay.mistakes += 1
                replay.mistake_bytes += len(enc[1]) - oracle
            return Stored(int(enc[0]), bytes(enc[1]))
        whole = replay.timed(stage + "full encode", self.encode_full, x)
        if enc is not None and len(enc[1]) < len(whole.payload):
            replay.timed(stage + "delta check", self.full.decode, enc[0], enc[1], len(x.raw), raw_y)
            return Stored(int(enc[0]), bytes(enc[1]))
        return whole

    # -- reverse deltas (today, cheap newest, delta in put) --------------------

    def reverse(
        self, run: list[list[Block]], full_len: dict[bytes, int], cheap: str | None, in_put: bool
    ) -> Replay:
        """Newest whole, older ones deltas on it; ``cheap``: the put's encoding (None:
        the full codec); ``in_put``: the delta is encoded while the new block is in
        memory."""
        put = "put: "
        rebase = put if in_put else "rebase: "
        replay = Replay(put_stages=(put,))
        stored = replay.stored
        for i, blocks in enumerate(run):
            cached: set[bytes] = set()
            room = CACHE_BYTES
            for block in blocks:
                if block.block_id in stored:
                    continue
                if cheap is None:
                    stored[block.block_id] = replay.timed(
                        put + "full encode", self.encode_full, block
                    )
                else:
                    stored[block.block_id] = replay.timed(
                        put + "cheap encode", self.encode_cheap, block, cheap
                    )
                if room >= len(block.raw):
                    cached.add(block.block_id)
                    room -= len(block.raw)
            if i:
                raw_of = {b.block_id: b.raw for b in blocks}
                in_memory = set(raw_of) if in_put else cached
                self._rebase(replay, rebase, run[i - 1], blocks, in_memory, full_len, cheap)
        if cheap is not None:
            for block in run[-1]:  # the final re-encode of the newest
                entry = stored[block.block_id]
                if entry.cheap:
                    raw = replay.timed(
                        "final: cheap decode", self.decode, stored, block.block_id, len(block.raw)
                    )
                    stored[block.block_id] = replay.timed(
                        "final: full encode",
                        self.encode_full,
                        Block(block.slot, block.block_id, block.width, bytes(raw)),
                    )
        return replay

    def _rebase(
        self,
        replay: Replay,
        stage: str,
        parent: list[Block],
        child: list[Block],
        in_memory: set[bytes],
        full_len: dict[bytes, int],
        cheap: str | None,
    ) -> None:
        stored = replay.stored
        by_slot = {b.slot: b for b in child}
        for x in parent:
            y = by_slot.get(x.slot)
            sx = stored[x.block_id]
            if not sx.cheap and sx.base is not None:
                continue
            eligible = (
                y is not None
                and y.block_id != x.block_id
                and len(y.raw) == len(x.raw)
                and y.width in DELTA_WIDTHS
                and stored[y.block_id].base is None
                # no delta is that short (as the store's rebase judges it)
                and (len(x.raw) if sx.cheap else len(sx.payload)) > min_delta_len(y.width)
            )
            if not eligible or y is None:
                if sx.cheap:  # stays whole: the full codec now
                    raw_x = replay.timed(
                        stage + "decode parent", self.decode, stored, x.block_id, len(x.raw)
                    )
                    stored[x.block_id] = replay.timed(stage + "full encode", self.encode_full, x)
                continue
            raw_x = replay.timed(
                stage + "decode parent", self.decode, stored, x.block_id, len(x.raw)
            )
            if y.block_id in in_memory:
                raw_y: bytes | memoryview = y.raw
            else:
                raw_y = replay.timed(
                    stage + "decode base", self.decode, stored, y.block_id, len(y.raw)
                )
            if cheap is None:
                enc = replay.timed(
                    stage + "delta encode",
                    self.full.encode_delta,
                    memoryview(raw_x),
                    raw_y,
                    y.width,
                    len(sx.payload),
                )
                if enc is not None:
                    replay.timed(
                        stage + "delta check", self.full.decode, enc[0], enc[1], len(x.raw), raw_y
                    )
                    stored[x.block_id] = Stored(int(enc[0]), bytes(enc[1]), y.block_id)
                continue
            new = self.delta_or_whole(replay, stage, x, raw_y, full_len[x.block_id])
            if new.codec == Codec.BIASED_DELTA:
                new.base = y.block_id
            stored[x.block_id] = new

    # -- forward deltas --------------------------------------------------------

    def forward(
        self, run: list[list[Block]], keyframe_every: int, full_len: dict[bytes, int], memory: bool
    ) -> Replay:
        """Each save a delta on the one before, a keyframe every ``keyframe_every``."""
        put = "put: "
        replay = Replay(put_stages=(put,))
        stored = replay.stored
        for i, blocks in enumerate(run):
            previous = {b.slot: b for b in run[i - 1]} if i % keyframe_every else {}
            for y in blocks:
                if y.block_id in stored:
                    continue
                x = previous.get(y.slot)
                if (
                    x is None
                    or x.block_id == y.block_id
                    or len(x.raw) != len(y.raw)
                    or y.width not in DELTA_WIDTHS
                    or len(y.raw) <= min_delta_len(y.width)
                ):
                    stored[y.block_id] = replay.timed(put + "full encode", self.encode_full, y)
                    continue
                if memory:
                    raw_x: bytes | memoryview = x.raw
                else:
                    raw_x = replay.timed(
                        put + "decode previous", self.decode, stored, x.block_id, len(x.raw)
                    )
                new = self.delta_or_whole(replay, put, y, raw_x, full_len[y.block_id])
                if new.codec == Codec.BIASED_DELTA:
                    new.base = x.block_id
                stored[y.block_id] = new
        return replay

    # -- restores --------------------------------------------------------------

    def restore_ms_per_mib(self, stored: dict[bytes, Stored], blocks: list[Block]) -> float:
        """CPU ms per MiB to decode and hash a checkpoint's tensor blocks, one thread."""
        start = time.thread_time()
        for block in blocks:
            raw = self.decode(stored, block.block_id, len(block.raw))
            if block_id(raw) != block.block_id:
                raise AssertionError(f"block {block.block_id.hex()} does not decode back")
        total = sum(len(b.raw) for b in blocks)
        return (time.thread_time() - start) * 1000 / (total / MIB)


def depth(stored: dict[bytes, Stored], blocks: list[Block]) -> int:
    """The longest chain among a checkpoint's blocks."""
    longest = 0
    for block in blocks:
        steps, bid = 0, block.block_id
        while stored[bid].base is not None:
            steps += 1
            bid = stored[bid].base  # type: ignore[assignment]
        longest = max(longest, steps)
    return longest


def margins(judged: list[tuple[int, float, int]]) -> dict[str, Any]:
    """Of the deltas judged against the estimate: the share of the estimate below which
    no delta was larger than the full payload, and how many deltas came at or above it
    (those a rule with that margin encodes with the full codec too)."""
    if not judged:
        return {"judged": 0}
    wrong = [d / e for d, e, f in judged if d > f]
    safe = min(wrong) if wrong else max(d / e for d, e, _ in judged)
    return {
        "judged": len(judged),
        "safe_margin": safe,
        "at_or_above_safe_margin": sum(d / e >= safe for d, e, _ in judged),
        "at_or_above_margin": sum(d >= ESTIMATE_MARGIN * e for d, e, _ in judged),
    }


def tensor_bytes(stored: dict[bytes, Stored]) -> int:
    return sum(len(s.payload) for s in stored.values())


# -- the real store and the peers ----------------------------------------------


def real_ingest(paths: list[Path], root: Path) -> dict[str, float]:
    """Today's store, every put and rebase, in a fresh process."""
    shutil.rmtree(root, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, "-m", "bench.corpus_child", "ingest", str(root), *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
    )
    shutil.rmtree(root, ignore_errors=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def zstd_t2(paths: list[Path], work: Path) -> dict[str, float] | None:
    """``zstd -3 -T2`` over the files: CPU and wall seconds."""
    if shutil.which("zstd") is None:
        return None
    work.mkdir(parents=True, exist_ok=True)
    cpu, start = children_cpu(), time.perf_counter()
    for path in paths:
        subprocess.run(
            ["zstd", "-3", "-T2", "-q", "-f", str(path), "-o", str(work / "out.zst")], check=True
        )
    return {"cpu_seconds": children_cpu() - cpu, "seconds": time.perf_counter() - start}


def borg_extract(paths: list[Path], work: Path) -> dict[str, float] | None:
    """borg (zstd,3): CPU and wall seconds to extract the newest file of a repository
    holding all of them."""
    if shutil.which("borg") is None:
        return None
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "BORG_REPO": str(work / "repo"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    }
    env["BORG_BASE_DIR"] = str(work / "base")

    def run(*args: str) -> None:
        subprocess.run(
            ["borg", *args], check=True, env=env, capture_output=True, cwd=paths[0].parent
        )

    run("init", "--encryption=none")
    for i, path in enumerate(paths):
        run("create", "--compression", "zstd,3", f"::s{i}", path.name)
    cpu, start = children_cpu(), time.perf_counter()
    run("extract", "--stdout", f"::s{len(paths) - 1}")
    result = {"cpu_seconds": children_cpu() - cpu, "seconds": time.perf_counter() - start}
    shutil.rmtree(work, ignore_errors=True)
    return result


def zipnn_delta_cpu(paths: list[Path], corpus: str) -> dict[str, float] | None:
    """ZipNN's delta mode as bench.peers runs it: process CPU and wall seconds."""
    try:
        from bench.peers import zipnn_delta
    except ImportError:
        return None
    cpu, start = time.process_time(), time.perf_counter()
    result = zipnn_delta(paths, WORK, corpus)
    if result is None:
        return None
    return {
        "cpu_seconds": time.process_time() - cpu,
        "seconds": time.perf_counter() - start,
        "stored_bytes": result.stored_bytes,
    }


# -- one corpus ------------------------------------------------------------------

DESIGNS: list[tuple[str, Callable[[Designs, list[list[Block]], dict[bytes, int]], Replay]]] = [
    ("today", lambda d, r, f: d.reverse(r, f, None, False)),
    ("cheap newest (raw)", lambda d, r, f: d.reverse(r, f, "raw", False)),
    ("cheap newest (planes)", lambda d, r, f: d.reverse(r, f, "planes", False)),
    ("delta in put", lambda d, r, f: d.reverse(r, f, None, True)),
    ("cheap newest (raw), delta in put", lambda d, r, f: d.reverse(r, f, "raw", True)),
    ("cheap newest (planes), delta in put", lambda d, r, f: d.reverse(r, f, "planes", True)),
    ("forward 4", lambda d, r, f: d.forward(r, 4, f, False)),
    ("forward 8", lambda d, r, f: d.forward(r, 8, f, False)),
    ("forward 4, previous in memory", lambda d, r, f: d.forward(r, 4, f, True)),
    ("forward 8, previous in memory", lambda d, r, f: d.forward(r, 8, f, True)),
]


def measure_corpus(corpus: str, paths: list[Path], runs: int, peers: bool) -> dict[str, Any]:
    work = WORK / "ingest-designs"
    logical = sum(p.stat().st_size for p in paths)
    real = [real_ingest(paths, work / "store") for _ in range(runs)]
    real_cpu = min(r["cpu_seconds"] for r in real)
    real_stored = statistics.median(r["stored_bytes"] for r in real)
    run, put_cpu = load_run(paths, work / "store")
    tensor_logical = sum(len(b.raw) for blocks in run for b in blocks)
    designs = Designs()
    full_len = {b.block_id: len(designs.encode_full(b).payload) for blocks in run for b in blocks}
    # Runs of every design in turn; of each design, the run that took the least CPU (on
    # a machine shared with other work, contention only ever adds CPU time).
    best: dict[str, Replay] = {}
    for _ in range(runs):
        for name, replay_of in DESIGNS:
            sample = replay_of(designs, run, full_len)
            if name not in best or sum(sample.seconds.values()) < sum(best[name].seconds.values()):
                best[name] = sample
    replays: dict[str, dict[str, Any]] = {}
    for name, replay in best.items():
        seconds = dict(replay.seconds)
        newest, oldest = run[-1], run[0]
        deepest = max(run, key=lambda blocks: depth(replay.stored, blocks))
        replays[name] = {
            "seconds": seconds,
            "replay_seconds": sum(seconds.values()),
            "put_seconds": sum(v for k, v in seconds.items() if k.startswith(replay.put_stages)),
            "tensor_stored_bytes": tensor_bytes(replay.stored),
            "mistakes": replay.mistakes,
            "mistake_bytes": replay.mistake_bytes,
            **margins(replay.judged),
            "newest_depth": depth(replay.stored, newest),
            "newest_ms_per_mib": min(
                designs.restore_ms_per_mib(replay.stored, newest) for _ in range(3)
            ),
            "deepest_depth": depth(replay.stored, deepest),
            "deepest_ms_per_mib": min(
                designs.restore_ms_per_mib(replay.stored, deepest) for _ in range(3)
            ),
            "oldest_depth": depth(replay.stored, oldest),
        }
        print(corpus, name, f"{replays[name]['replay_seconds']:.2f} s", flush=True)
    today = replays["today"]
    shared_cpu = real_cpu - today["replay_seconds"]
    shared_put_cpu = put_cpu - today["put_seconds"]
    shared_stored = real_stored - today["tensor_stored_bytes"]
    for result in replays.values():
        result["all_work_cpu_s_per_gb"] = (shared_cpu + result["replay_seconds"]) / (logical / GB)
        result["put_cpu_s_per_gb"] = (shared_put_cpu + result["put_seconds"]) / (logical / GB)
        result["ratio"] = logical / (shared_stored + result["tensor_stored_bytes"])
    out: dict[str, Any] = {
        "logical_bytes": logical,
        "tensor_logical_bytes": tensor_logical,
        "real_today": real,
        "real_cpu_seconds": real_cpu,
        "real_stored_bytes": real_stored,
        "real_put_cpu_seconds": put_cpu,
        "designs": replays,
    }
    if peers:
        out["zipnn_delta"] = zipnn_delta_cpu(paths, corpus)
        out["zstd_t2"] = zstd_t2(paths, work / "zstd")
        out["borg_extract"] = borg_extract(paths, work / "borg")
        out["newest_bytes"] = paths[-1].stat().st_size
    shutil.rmtree(work, ignore_errors=True)
    return out


def report(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "`python -m bench.ingest_designs` (module docstring). All-work CPU: every put and"
        " every rebase of the six saves (and the final re-encode where a design has one),"
        " CPU seconds per GB of checkpoints. Put CPU: the saves alone (previous rebase done;"
        ' for "delta in put" designs the delta work is in the put). Restore: CPU ms per MiB'
        " to decode and hash the tensor blocks, one thread. Ratio: logical / stored bytes"
        " after the last save.",
        "",
    ]
    for corpus, result in results.items():
        logical = result["logical_bytes"]
        lines += [
            f"## {corpus}",
            "",
            f"{logical / MB:,.0f} MB in six saves, {result['tensor_logical_bytes'] / MB:,.0f} MB"
            f" of it tensor blocks. Today's store: {result['real_cpu_seconds']:.2f} CPU s all"
            f" work, {result['real_put_cpu_seconds']:.2f} CPU s for the puts alone,"
            f" {result['real_stored_bytes'] / MB:,.1f} MB stored.",
            "",
            "| design | all-work CPU s/GB | vs today | put CPU s/GB | ratio"
            " | newest restore ms/MiB (depth) | deepest restore ms/MiB (depth)"
            " | deltas kept on the estimate though larger (bytes) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        today = result["designs"]["today"]["all_work_cpu_s_per_gb"]
        for name, d in result["designs"].items():
            lines.append(
                f"| {name} | {d['all_work_cpu_s_per_gb']:.2f}"
                f" | {d['all_work_cpu_s_per_gb'] / today:.2f}"
                f" | {d['put_cpu_s_per_gb']:.2f} | {d['ratio']:.3f}"
                f" | {d['newest_ms_per_mib']:.2f} ({d['newest_depth']})"
                f" | {d['deepest_ms_per_mib']:.2f} ({d['deepest_depth']})"
                f" | {d['mistakes']} ({d['mistake_bytes']:,}) |"
            )
        lines += [""]
        for name, d in result["designs"].items():
            if d.get("judged"):
                lines.append(
                    f"- {name}: {d['judged']} deltas judged against the estimate; below"
                    f" {d['safe_margin']:.3f} of it none was larger than the full payload"
                    f" ({d['at_or_above_safe_margin']} at or above that share,"
                    f" {d['at_or_above_margin']} at or above the margin used,"
                    f" {ESTIMATE_MARGIN})"
                )
        lines += ["", "CPU seconds of each replayed stage:", ""]
        stages = sorted({s for d in result["designs"].values() for s in d["seconds"]})
        lines += [
            "| design | " + " | ".join(stages) + " |",
            "|---|" + "---:|" * len(stages),
        ]
        for name, d in result["designs"].items():
            cells = " | ".join(f"{d['seconds'].get(s, 0):.2f}" for s in stages)
            lines.append(f"| {name} | {cells} |")
        lines.append("")
        peer_lines = []
        if result.get("zipnn_delta"):
            z = result["zipnn_delta"]
            peer_lines.append(
                f"- ZipNN delta: {z['cpu_seconds'] / (logical / GB):.2f} CPU s/GB"
                f" ({logical / MB / z['seconds']:,.0f} MB/s wall),"
                f" ratio {logical / z['stored_bytes']:.3f}"
            )
        if result.get("zstd_t2"):
            z = result["zstd_t2"]
            peer_lines.append(
                f"- zstd -3 -T2: {z['cpu_seconds'] / (logical / GB):.2f} CPU s/GB"
                f" ({logical / MB / z['seconds']:,.0f} MB/s wall)"
            )
        if result.get("borg_extract"):
            b = result["borg_extract"]
            newest = result["newest_bytes"]
            peer_lines.append(
                f"- borg extract of the newest file: {b['cpu_seconds'] * 1000 / (newest / MIB):.2f}"
                f" CPU ms/MiB ({newest / MB / b['seconds']:,.0f} MB/s wall)"
            )
        if peer_lines:
            lines += ["Peers on the same files:", "", *peer_lines, ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="small", choices=("small", "medium"))
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--corpora", nargs="+", default=["pretrain", "bf16"])
    parser.add_argument("--runs", type=int, default=1, help="real ingests and replays (medians)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--report", default="ingest-designs")
    args = parser.parse_args()
    results = {}
    for corpus in args.corpora:
        paths = write(corpus, WORK / f"corpus-{args.scale}", args.scale, args.checkpoints)
        results[corpus] = measure_corpus(corpus, paths, args.runs, not args.no_peers)
    title = f"Ingest designs ({args.scale} corpora)"
    save_report(args.report, title, report(results), {"scale": args.scale, **results})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
