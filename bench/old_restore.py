"""Old checkpoints against the newest, and the memory an ingest holds, on the corpora.

    python -m bench.old_restore [--corpora pretrain bf16] [--scale small]
                                [--depths 8 3 2 1] [--repeats 3]
                                [--rss-scale medium] [--rss-corpora pretrain ...]
                                [--cache-mib 128 64 32 0] [--scalar-loops]
                                [--report NAME]

Restore: for each corpus and each ``delta_max_depth``, the corpus is ingested
as one job (bench/corpus.py, six saves), then the newest checkpoint and the one
with the longest delta chains are restored to /dev/null in turns, ``--repeats``
times each, in one process; the best run of each, and their ratio (the
machine is shared: a ratio measured in turns is steadier than either speed).

``--scalar-loops``: the first depth's store is restored again, in turns as
above, with the C loops' vector instructions off (what the loops were before
them, on the same bytes), and both checkpoints are read on one thread both
ways, in turns (CPU time per MiB).

Memory: for each corpus of ``--rss-scale`` and each base cache size, the
corpus is ingested (every put and rebase) in a fresh process, which reports
its peak RSS, the stored ratio and its speed.

Writes bench/results/<date>-<host>-old-restore.{md,json} (or -NAME).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bench.common import MB, WORK, save_report
from bench.rss_child import peak_rss_bytes
from ckptstore import CheckpointStore, StoreConfig
from ckptstore.store.catalog.records import BlockRecord, CheckpointRecord
from ckptstore.store.codecs import native
from ckptstore.store.codecs.frames import unframe_planes
from ckptstore.store.codecs.grouping import grouping
from ckptstore.store.codecs.ids import UINTS, Codec
from ckptstore.store.codecs.planes import join_planes
from ckptstore.store.ids import block_id
from ckptstore.store.packs.entries import load_each
from ckptstore.store.packs.format import parse_entry
from ckptstore.store.rebase import chain_depths

JOB = "corpus"
MIB = 1 << 20


def ingest(root: Path, files: list[Path], config: StoreConfig) -> dict[str, float]:
    """Put the files in order as one job, each rebase done before the next put."""
    shutil.rmtree(root, ignore_errors=True)
    with CheckpointStore.open(root, config=config) as store:
        start = time.perf_counter()
        logical = 0
        for i, path in enumerate(files):
            store.settle()
            logical += store.put(JOB, path, epoch=i).size_bytes
        store.settle()
        store.encode_deferred()  # the last save's raw blocks
        seconds = time.perf_counter() - start
        stored = store.stats().stored_bytes
    return {"ratio": logical / stored, "ingest_mb_s": logical / MB / seconds}


def newest_and_deepest(store: CheckpointStore) -> tuple[CheckpointRecord, CheckpointRecord, int]:
    """The job's newest checkpoint, the one with the longest delta chains, that length."""
    records = sorted(store.list(JOB, limit=None).checkpoints, key=lambda r: r.created_at)
    catalog = store.context.catalog
    depth_of = {}
    for record in records:
        blocks = [block for _, block in catalog.manifest(record.checkpoint_id)]
        depth_of[record.checkpoint_id] = max(chain_depths(catalog, blocks, 64).values(), default=0)
    deepest = max(records, key=lambda r: (depth_of[r.checkpoint_id], r.created_at))
    return records[-1], deepest, depth_of[deepest.checkpoint_id]


def restores(root: Path, repeats: int) -> dict[str, float]:
    """The best MB/s of the newest and of the deepest checkpoint, restored in turns."""
    best = {"newest": float("inf"), "deepest": float("inf")}
    cpu = dict(best)  # CPU seconds of the process (all threads): the work, whatever the load
    with CheckpointStore.open(root) as store:
        newest, deepest, depth = newest_and_deepest(store)
        for _ in range(repeats):
            for label, record in (("newest", newest), ("deepest", deepest)):
                start, start_cpu = time.perf_counter(), time.process_time()
                store.restore(record.checkpoint_id, "/dev/null")
                best[label] = min(best[label], time.perf_counter() - start)
                cpu[label] = min(cpu[label], time.process_time() - start_cpu)
    newest_mb_s = newest.size_bytes / MB / best["newest"]
    deepest_mb_s = deepest.size_bytes / MB / best["deepest"]
    return {
        "newest_mb_s": newest_mb_s,
        "deepest_mb_s": deepest_mb_s,
        "depth": depth,
        "deepest_over_newest": deepest_mb_s / newest_mb_s,
        # per byte, the newest's CPU time over the deepest's
        "cpu_deepest_over_newest": (cpu["newest"] / newest.size_bytes)
        / (cpu["deepest"] / deepest.size_bytes),
    }


def cpu_ms(fn: Callable[[], object], runs: int = 20) -> float:
    """The least CPU milliseconds of ``runs`` calls (the machine is shared)."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1e3


def payload_costs(root: Path, scalar_loops: bool = False) -> dict[str, float]:
    """CPU ms per MiB of raw bytes, on the largest delta block of the deepest checkpoint:
    decoding the whole block its chain starts from, one delta level (and the parts of
    it: zstd frames, the grouping of the base, the planes joined onto the base), and
    hashing the result; with ``scalar_loops``, the level and the parts the C loops
    do again without their vector instructions."""
    with CheckpointStore.open(root) as store:
        ctx = store.context
        _, deepest, _ = newest_and_deepest(store)
        blocks = [b for _, b in ctx.catalog.manifest(deepest.checkpoint_id)]
        chain: list[BlockRecord] = [max(blocks, key=lambda b: (b.base_id is not None, b.raw_len))]
        while chain[-1].base_id is not None:
            base_record = ctx.catalog.get_block(chain[-1].base_id)
            assert base_record is not None
            chain.append(base_record)
        payloads = [
            parse_entry(ctx.blocks.get(r.pack_id, r.offset, r.entry_len)) for r in chain[-2:]
        ]
        (delta, delta_payload), (whole, whole_payload) = payloads
        raw_len = whole.raw_len
        base = bytes(ctx.codec.decode(whole.codec, whole_payload, raw_len))
        out = np.empty(raw_len, np.uint8)
        out_costs = {
            "whole": cpu_ms(lambda: ctx.codec.decode(whole.codec, whole_payload, raw_len)),
            "delta level": cpu_ms(
                lambda: ctx.codec.decode(delta.codec, delta_payload, raw_len, base, out)
            ),
            "hash": cpu_ms(lambda: block_id(out)),
        }
        view = memoryview(delta_payload)
        width, group_log = view[0], view[1]
        groups = grouping(base, width, group_log) if delta.codec == Codec.BIASED_DELTA else None
        if groups is not None:  # the parts of a grouped codec 6 level
            count, n = len(groups.sizes), raw_len // width
            biases = np.frombuffer(view, f"<u{width}", count, 2).astype(UINTS[width])
            offset, planes = 2 + count * width, np.empty(n * width, np.uint8)
            decompress = ctx.codec._work.unzstd_into  # noqa: SLF001 - the codec's own zstd
            scratch = np.empty(n * width, np.uint8)
            out_costs |= {
                "of which zstd frames": cpu_ms(
                    lambda: unframe_planes(
                        view, offset, width, list(groups.sizes), decompress, planes
                    )
                ),
                "of which grouping": cpu_ms(lambda: grouping(base, width, group_log)),
                "of which joining planes": cpu_ms(
                    lambda: join_planes(
                        planes, width, out[: n * width], base, groups, biases, scratch
                    )
                ),
            }
        if scalar_loops:
            with vector_loops_off():
                out_costs["delta level, scalar loops"] = cpu_ms(
                    lambda: ctx.codec.decode(delta.codec, delta_payload, raw_len, base, out)
                )
                if groups is not None:
                    out_costs["grouping, scalar loops"] = cpu_ms(
                        lambda: grouping(base, width, group_log)
                    )
                    out_costs["joining planes, scalar loops"] = cpu_ms(
                        lambda: join_planes(
                            planes, width, out[: n * width], base, groups, biases, scratch
                        )
                    )
    scale = MIB / raw_len
    return {name: ms * scale for name, ms in out_costs.items()} | {
        "delta codec": delta.codec,
        "whole codec": whole.codec,
        "raw_len": raw_len,
    }


def restore_rows(
    corpora: list[str], scale: str, depths: list[int], repeats: int, scalar_loops: bool = False
) -> dict:
    """Each corpus at each depth, and at the first depth with deltas not grouped (and,
    with ``scalar_loops``, the first depth's store read again without the C loops'
    vector instructions: the same bytes, the loops before them)."""
    from bench.corpus import write  # imports torch: not in the children, whose RSS counts

    rows: dict = {}
    root = WORK / "old-restore-store"
    for corpus in corpora:
        files = write(corpus, WORK / f"corpus-{scale}", scale, 6)
        runs = [(f"{depth}", StoreConfig(delta_max_depth=depth)) for depth in depths]
        ungrouped = StoreConfig(delta_max_depth=depths[0], delta_group_log=0)
        runs.append((f"{depths[0]}, deltas not grouped", ungrouped))
        for label, config in runs:
            print(f"restore: {corpus}, delta_max_depth {label} ...", flush=True)
            row = ingest(root, files, config)
            ingested = dict(row)
            row |= restores(root, repeats)
            if label == runs[0][0]:
                row["payload_ms_per_mib"] = payload_costs(root, scalar_loops)
            rows[f"{corpus}, {label}"] = {"corpus": corpus, "max_depth": label, **row}
            if label == runs[0][0] and scalar_loops:
                scalar = f"{label}, scalar loops"
                with vector_loops_off():
                    rows[f"{corpus}, {scalar}"] = {
                        "corpus": corpus,
                        "max_depth": scalar,
                        **ingested,
                        **restores(root, repeats),
                    }
                rows[f"{corpus}, {label}"]["one_thread_ms_per_mib"] = one_thread_costs(root, 7)
    shutil.rmtree(root, ignore_errors=True)
    return rows


def one_thread_costs(root: Path, runs: int) -> dict[str, float]:
    """CPU ms per MiB of loading every block of the newest and of the deepest
    checkpoint in order on this thread (no pool, nothing written), with the C loops'
    vector instructions and without, in turns; the least of ``runs`` each. Steadier
    than a restore on a shared machine: one thread, no handoffs."""
    best: dict[str, float] = {}
    with CheckpointStore.open(root) as store:
        ctx = store.context
        newest, deepest, _ = newest_and_deepest(store)
        for _ in range(runs):
            for loops in ("vector", "scalar"):
                for label, record in (("newest", newest), ("deepest", deepest)):
                    blocks = [b for _, b in ctx.catalog.manifest(record.checkpoint_id)]
                    with contextlib.nullcontext() if loops == "vector" else vector_loops_off():
                        start = time.process_time()
                        load_each(ctx, blocks)
                        seconds = time.process_time() - start
                    key = f"{label}, {loops}"
                    best[key] = min(
                        best.get(key, float("inf")), seconds * 1e3 * MIB / record.size_bytes
                    )
    return best


@contextlib.contextmanager
def vector_loops_off() -> Iterator[None]:
    """The C loops without their vector instructions (the same bytes), for the while."""
    kernels = native.kernels
    if kernels is None:
        raise SystemExit("--scalar-loops needs the C loops (ckptstore.store.codecs._kernels)")
    was = kernels.vector_loops(False)
    try:
        yield
    finally:
        kernels.vector_loops(was)


def rss_rows(corpora: list[str], scale: str, caches_mib: list[float]) -> dict:
    from bench.corpus import write

    rows: dict = {}
    for corpus in corpora:
        files = write(corpus, WORK / f"corpus-{scale}", scale, 6)
        for cache in caches_mib:
            print(f"memory: {corpus}, base cache {cache:g} MiB ...", flush=True)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.old_restore",
                    "--child",
                    str(cache),
                    *map(str, files),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rows[f"{corpus}, {cache:g}"] = {"corpus": corpus, "cache_mib": cache}
            rows[f"{corpus}, {cache:g}"] |= json.loads(out.stdout)
    return rows


def child(cache_mib: float, files: list[Path]) -> None:
    """Ingest in this fresh process; print ratio, speed and peak RSS as one JSON line."""
    root = WORK / "old-restore-rss-store"
    row = ingest(root, files, StoreConfig(delta_cache_bytes=int(cache_mib * MIB)))
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(row | {"peak_rss_mb": peak_rss_bytes() / MB}))


def report_lines(restore: dict, rss: dict, args: argparse.Namespace) -> list[str]:
    lines = [
        f"Command: `python -m bench.old_restore {' '.join(sys.argv[1:])}`",
        "",
        f"## Restore of the oldest checkpoint against the newest (scale {args.scale})",
        "",
        "Six saves ingested as one job. *newest* is stored whole; *deepest* is the"
        " checkpoint with the longest delta chains, *depth* deltas on a whole block."
        f" Best of {args.repeats} restores to /dev/null each, newest and deepest in"
        " turns in one process; MB/s of 10^6 bytes. The machine is shared: the ratio"
        " is steadier than either speed, and the ratio of the CPU time per byte (all"
        " threads of the process, least of the runs) steadier still."
        + (
            " *scalar loops*: the row above's store read again with the C loops' vector"
            " instructions off."
            if args.scalar_loops
            else ""
        ),
        "",
        "| corpus | delta_max_depth | ratio | ingest MB/s | newest MB/s | deepest MB/s"
        " | depth | deepest / newest | same, by CPU time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in restore.values():
        lines.append(
            f"| {r['corpus']} | {r['max_depth']} | {r['ratio']:.2f}x | {r['ingest_mb_s']:,.0f}"
            f" | {r['newest_mb_s']:,.0f} | {r['deepest_mb_s']:,.0f} | {r['depth']}"
            f" | {r['deepest_over_newest']:.2f} | {r['cpu_deepest_over_newest']:.2f} |"
        )
    lines += [
        "",
        "CPU ms per MiB of raw bytes of each payload a read decodes (one thread, least"
        " of 20), on the largest delta block of the deepest checkpoint, at the first"
        " delta_max_depth above: the whole block its chain starts from, one delta"
        " level on it and, for a grouped delta, its parts; then the hash of the block."
        " A block k deltas deep costs about whole + k x delta level + hash.",
        "",
    ]
    costs = {
        r["corpus"]: r["payload_ms_per_mib"] for r in restore.values() if "payload_ms_per_mib" in r
    }
    names = list(dict.fromkeys(k for c in costs.values() for k in c if isinstance(c[k], float)))
    lines += [
        "| corpus | " + " | ".join(names) + " | codecs (whole, delta) |",
        "|---|" + "---:|" * len(names) + "---|",
    ]
    for corpus, c in costs.items():
        cells = [f"{c[k]:.2f}" if k in c else "-" for k in names]
        lines.append(
            f"| {corpus} | " + " | ".join(cells) + f" | {c['whole codec']}, {c['delta codec']} |"
        )
    threads = {
        r["corpus"]: r["one_thread_ms_per_mib"]
        for r in restore.values()
        if "one_thread_ms_per_mib" in r
    }
    if threads:
        lines += [
            "",
            "CPU ms per MiB of reading every block of the checkpoint in order on one thread"
            " (no pool, nothing written), with the C loops' vector instructions and"
            " without, in turns; least of 7. Steadier than the restores above on a"
            " shared machine.",
            "",
            "| corpus | newest | deepest | deepest / newest (by speed) | newest, scalar loops"
            " | deepest, scalar loops | deepest / newest, scalar loops |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for corpus, t in threads.items():
            lines.append(
                f"| {corpus} | {t['newest, vector']:.2f} | {t['deepest, vector']:.2f}"
                f" | {t['newest, vector'] / t['deepest, vector']:.2f}"
                f" | {t['newest, scalar']:.2f} | {t['deepest, scalar']:.2f}"
                f" | {t['newest, scalar'] / t['deepest, scalar']:.2f} |"
            )
    lines += [
        "",
        f"## Peak RSS of an ingest by base cache size (scale {args.rss_scale})",
        "",
        "Each corpus ingested in a fresh process, every put and rebase; peak RSS is"
        " the process's high-water mark (VmHWM).",
        "",
        "| corpus | base cache MiB | peak RSS MB | ratio | ingest MB/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rss.values():
        lines.append(
            f"| {r['corpus']} | {r['cache_mib']:g} | {r['peak_rss_mb']:,.0f}"
            f" | {r['ratio']:.4f}x | {r['ingest_mb_s']:,.0f} |"
        )
    return lines


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(float(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
        return
    from bench.corpus import CORPORA

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpora", nargs="*", choices=CORPORA, default=["pretrain", "bf16"])
    parser.add_argument("--scale", choices=("small", "medium", "large"), default="small")
    parser.add_argument("--depths", nargs="+", type=int, default=[8, 3, 2, 1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-scale", choices=("small", "medium", "large"), default="medium")
    parser.add_argument("--rss-corpora", nargs="*", choices=CORPORA, default=["pretrain"])
    parser.add_argument("--cache-mib", nargs="+", type=float, default=[128, 64, 32, 0])
    parser.add_argument(
        "--scalar-loops",
        action="store_true",
        help="also restore the first depth's store without the C loops' vector instructions",
    )
    parser.add_argument("--report", default="old-restore")
    args = parser.parse_args()
    restore = restore_rows(args.corpora, args.scale, args.depths, args.repeats, args.scalar_loops)
    rss = rss_rows(args.rss_corpora, args.rss_scale, args.cache_mib)
    lines = report_lines(restore, rss, args)
    md = save_report(
        args.report,
        "Old checkpoints' restores and ingest memory",
        lines,
        {
            "restore": restore,
            "rss": rss,
        },
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
