"""Stored bytes and speed on the checkpoint corpora of bench/corpus.py, beside the peers.

    python -m bench.corpora [--scale small|medium|large] [--checkpoints 6] [--no-peers]
                            [--no-variants] [--corpora pretrain ...] [--report NAME]

For each corpus, in one run on this machine:

- ckptstore (default settings) ingests the files in save order as one job, in
  a fresh process (peak RSS measured), then restores the last checkpoint and
  the one with the longest delta chains in another; the faster of two runs;
- ckptstore with techniques turned off (zstd only; byte planes without
  deltas; deltas at most 4 deep; deltas, or whole blocks, not grouped by
  exponent), so the gain of each shows;
- the limits, measured on the same files: file copy, pyfastcdc chunking,
  BLAKE3, zstd-1 compression and decompression;
- the peers of bench/peers.py that are installed.

Writes bench/results/<date>-<host>-corpora-<scale>.{md,json} (or -NAME) and two plots.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import zstandard

from bench.common import MB, RESULTS, WORK, save_report
from bench.corpus import CORPORA, write
from bench.peers import PEERS, STORE_PEERS, run_peers
from ckptstore import CheckpointStore, StoreConfig
from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER, Chunker

VARIANTS = {
    "zstd only": StoreConfig(byte_planes=False, delta_max_depth=0),
    "planes, no deltas": StoreConfig(delta_max_depth=0),
    "deltas <= 4 deep": StoreConfig(delta_max_depth=4),
    "deltas not grouped": StoreConfig(delta_group_log=0),
    "whole blocks not grouped": StoreConfig(exponent_group_log=0),
}


def child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.corpus_child", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


RUNS = 2  # this VM's speed varies by up to 30% from run to run: keep the faster of two


def ckptstore_default(files: list[Path]) -> dict[str, float]:
    root = WORK / "corpora-store"
    runs = []
    for _ in range(RUNS):
        shutil.rmtree(root, ignore_errors=True)
        ingest = child("ingest", str(root), *map(str, files))
        runs.append((ingest, child("restore", str(root))))
    shutil.rmtree(root, ignore_errors=True)
    ingest = min((i for i, _ in runs), key=lambda i: i["seconds"])
    restore = min((r for _, r in runs), key=lambda r: r["last_seconds"])
    return {
        "ratio": ingest["logical_bytes"] / ingest["stored_bytes"],
        "stored_bytes": ingest["stored_bytes"],
        "ingest_mb_s": ingest["logical_bytes"] / MB / ingest["seconds"],
        "put_mb_s": ingest["logical_bytes"] / MB / ingest["put_seconds"],
        "ingest_rss_mb": ingest["peak_rss_bytes"] / MB,
        "restore_last_mb_s": restore["last_bytes"] / MB / restore["last_seconds"],
        "restore_deepest_mb_s": restore["deepest_bytes"] / MB / restore["deepest_seconds"],
        "deepest_depth": restore["deepest_depth"],
        "restore_rss_mb": restore["peak_rss_bytes"] / MB,
    }


def variant_ratio(files: list[Path], config: StoreConfig) -> float:
    root = WORK / "corpora-variant"
    shutil.rmtree(root, ignore_errors=True)
    with CheckpointStore.open(root, config=config) as store:
        logical = sum(store.put("corpus", path).size_bytes for path in files)
        store.settle()
        store.encode_deferred()  # the last save's raw blocks
        stored = store.stats().stored_bytes
    shutil.rmtree(root, ignore_errors=True)
    return logical / stored


def limits(files: list[Path]) -> dict[str, float]:
    """MB/s of the building blocks on these files (single thread unless named)."""
    datas = [path.read_bytes() for path in files[-2:]]
    n = sum(len(d) for d in datas)
    cores = len(os.sched_getaffinity(0))

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return n / MB / (time.perf_counter() - start)

    copy_dir = WORK / "corpora-copy"
    copy_dir.mkdir(parents=True, exist_ok=True)
    out = {
        "file copy": timed(lambda: [shutil.copyfile(p, copy_dir / p.name) for p in files[-2:]]),
        "pyfastcdc": timed(
            lambda: [Chunker(DEFAULT_CHUNKER).cut(memoryview(d), True) for d in datas]
        ),
        "blake3": timed(lambda: [blake3.blake3(d).digest() for d in datas]),
    }
    shutil.rmtree(copy_dir, ignore_errors=True)
    compressor = zstandard.ZstdCompressor(level=1)
    pieces = [d[i : i + (1 << 20)] for d in datas for i in range(0, len(d), 1 << 20)]
    out["zstd-1 compress"] = timed(lambda: [compressor.compress(p) for p in pieces])
    frames = [compressor.compress(p) for p in pieces]
    decompressor = zstandard.ZstdDecompressor()
    out["zstd decompress"] = timed(lambda: [decompressor.decompress(f) for f in frames])
    with ThreadPoolExecutor(cores) as pool:

        def compress_all() -> None:
            list(pool.map(lambda p: zstandard.ZstdCompressor(level=1).compress(p), pieces))

        def decompress_all() -> None:
            list(pool.map(lambda f: zstandard.ZstdDecompressor().decompress(f), frames))

        out[f"zstd-1 compress x{cores} threads"] = timed(compress_all)
        out[f"zstd decompress x{cores} threads"] = timed(decompress_all)
    return out


def run_corpus(
    corpus: str, out: Path, scale: str, checkpoints: int, peers: bool, variants: bool = True
) -> dict:
    files = write(corpus, out, scale, checkpoints)
    logical = sum(f.stat().st_size for f in files)
    row: dict = {"logical_mb": logical / MB, "files": len(files)}
    row["ckptstore"] = ckptstore_default(files)
    row["variants"] = {
        name: variant_ratio(files, cfg) if variants else None for name, cfg in VARIANTS.items()
    }
    row["limits"] = limits(files)
    row["peers"] = {}
    for name, result in (run_peers(files, corpus) if peers else {}).items():
        ok = result.round_trip and result.stored_bytes > 0
        row["peers"][name] = {
            "ratio": logical / result.stored_bytes if ok else None,
            "stored_bytes": result.stored_bytes,
            "mb_s": logical / MB / result.seconds if ok and result.seconds else None,
            "restore_mb_s": files[-1].stat().st_size / MB / result.restore_seconds
            if ok and result.restore_seconds
            else None,
            "note": result.note,
            "round_trip": result.round_trip,
        }
    return row


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _speed(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def comparisons(row: dict) -> dict[str, float | None]:
    """ckptstore's stored bytes as a fraction of the best store peer's and of z4ai's."""
    stored = row["ckptstore"]["stored_bytes"]
    peers = row["peers"]
    store_bytes = [
        peers[p]["stored_bytes"] for p in STORE_PEERS if p in peers and peers[p]["ratio"]
    ]
    z4ai = peers.get("z4ai delta", {})
    return {
        "vs_best_store_peer": stored / min(store_bytes) if store_bytes else None,
        "vs_z4ai": (z4ai["stored_bytes"] and stored / z4ai["stored_bytes"])
        if z4ai.get("ratio")
        else None,
    }


def report_lines(rows: dict, args: argparse.Namespace) -> list[str]:
    peer_names = [p for p in PEERS if any(p in r["peers"] for r in rows.values())]
    lines = [
        f"Scale {args.scale}, {args.checkpoints} checkpoints per corpus, each corpus ingested in"
        " save order as one job. Ratio = logical bytes / stored bytes (packs for ckptstore,"
        " repository or output bytes for the peers). Speeds in MB/s (10^6 bytes). ckptstore"
        " stores each new checkpoint whole and then, in the background, re-encodes the"
        " previous one as deltas on it: *put* is what a save costs when the previous"
        " rebase is done (saves minutes apart), *ingest, with rebases* is the whole work"
        " of the sequence, every put and every rebase, on the same 2 cores.",
        "",
        "## Stored ratio",
        "",
        "| corpus | logical MB | ckptstore | "
        + " | ".join(f"ckptstore, {v}" for v in VARIANTS)
        + (" | " + " | ".join(peer_names) if peer_names else "")
        + " |",
        "|---|---:|---:|" + "---:|" * (len(VARIANTS) + len(peer_names)),
    ]
    for name, r in rows.items():
        cells = [_ratio(r["ckptstore"]["ratio"])]
        cells += [_ratio(r["variants"][v]) for v in VARIANTS]
        cells += [_ratio(r["peers"].get(p, {}).get("ratio")) for p in peer_names]
        lines.append(f"| {name} | {r['logical_mb']:,.0f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "ckptstore's stored bytes as a fraction of the best store peer's (restic, borg, zstd -3,"
        " zstd --patch-from; lower is better, issue target <= 0.80) and of z4ai's (issue"
        " target <= 0.97, i.e. a ratio 3% above):",
        "",
        "| corpus | vs best store peer | vs z4ai |",
        "|---|---:|---:|",
    ]
    for name, r in rows.items():
        c = comparisons(r)
        cells = ["-" if c[k] is None else f"{c[k]:.2f}" for k in ("vs_best_store_peer", "vs_z4ai")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "ckptstore's stored bytes as a fraction of each peer's (below 1: ckptstore stores less):",
        "",
        "| corpus | " + " | ".join(peer_names) + " |",
        "|---|" + "---:|" * len(peer_names),
    ]
    for name, r in rows.items():
        ours = r["ckptstore"]["stored_bytes"]
        cells = [
            f"{ours / r['peers'][p]['stored_bytes']:.2f}"
            if r["peers"].get(p, {}).get("ratio")
            else "-"
            for p in peer_names
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Speed and memory",
        "",
        "| corpus | put MB/s | ingest MB/s, with rebases | restore last MB/s"
        " | restore deepest MB/s (depth) |"
        " ingest peak RSS MB | restore peak RSS MB | "
        + " | ".join(f"{p} MB/s" for p in peer_names)
        + " |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(peer_names),
    ]
    for name, r in rows.items():
        c = r["ckptstore"]
        cells = [
            _speed(c["put_mb_s"]),
            _speed(c["ingest_mb_s"]),
            _speed(c["restore_last_mb_s"]),
            f"{_speed(c['restore_deepest_mb_s'])} ({c['deepest_depth']})",
            _speed(c["ingest_rss_mb"]),
            _speed(c["restore_rss_mb"]),
            *(_speed(r["peers"].get(p, {}).get("mb_s")) for p in peer_names),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    limit_names = list(next(iter(rows.values()))["limits"])
    lines += [
        "",
        "## Limits on the same files, and ckptstore as a fraction of them",
        "",
        "Measured on the last two files of each corpus. Ingest is compared with zstd-1"
        " compression on all cores (every new byte is compressed once), restore with zstd"
        " decompression on all cores.",
        "",
        "| corpus | " + " | ".join(limit_names) + " | ingest / compress | restore / decompress |",
        "|---|" + "---:|" * (len(limit_names) + 2),
    ]
    for name, r in rows.items():
        lim = r["limits"]
        compress = next(v for k, v in lim.items() if k.startswith("zstd-1 compress x"))
        decompress = next(v for k, v in lim.items() if k.startswith("zstd decompress x"))
        cells = [_speed(lim[k]) for k in limit_names]
        cells.append(f"{r['ckptstore']['ingest_mb_s'] / compress:.2f}")
        cells.append(f"{r['ckptstore']['restore_last_mb_s'] / decompress:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [
        f"- {p} on {name}: {r['peers'][p]['note']}"
        + ("" if r["peers"][p]["round_trip"] else " (did not give the last file back: left out)")
        for name, r in rows.items()
        for p in r["peers"]
        if r["peers"][p]["note"] or not r["peers"][p]["round_trip"]
    ]
    if notes:
        lines += ["", "## Peer notes", "", *notes]
    return lines


def _bars(
    names: list[str], series: dict[str, list[float]], title: str, ylabel: str, path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(names))], values, width, label=label)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
    if "log" in ylabel:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot(rows: dict, stem: str) -> list[Path]:
    """Ratio per corpus per tool; ingest and restore against the limits."""
    names = list(rows)
    peers = [p for p in PEERS if any(r["peers"].get(p, {}).get("ratio") for r in rows.values())]
    ratios = {"ckptstore": [r["ckptstore"]["ratio"] for r in rows.values()]}
    ratios |= {p: [r["peers"].get(p, {}).get("ratio") or 0 for r in rows.values()] for p in peers}

    def limit(r: dict, prefix: str) -> float:
        return next(v for k, v in r["limits"].items() if k.startswith(prefix))

    speeds = {
        "ckptstore ingest": [r["ckptstore"]["ingest_mb_s"] for r in rows.values()],
        "ckptstore restore (last)": [r["ckptstore"]["restore_last_mb_s"] for r in rows.values()],
        "limit: zstd-1 compress, all cores": [limit(r, "zstd-1 compress x") for r in rows.values()],
        "limit: zstd decompress, all cores": [limit(r, "zstd decompress x") for r in rows.values()],
        "z4ai delta": [r["peers"].get("z4ai delta", {}).get("mb_s") or 0 for r in rows.values()],
        "ZipNN delta": [r["peers"].get("ZipNN delta", {}).get("mb_s") or 0 for r in rows.values()],
    }
    return [
        _bars(
            names,
            ratios,
            "Stored ratio per corpus (higher is better)",
            "logical / stored (log scale)",
            RESULTS / f"{stem}-ratio.png",
        ),
        _bars(
            names,
            speeds,
            "Ingest and restore against the limits (same files, same run)",
            "MB/s",
            RESULTS / f"{stem}-speed.png",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=("small", "medium", "large"), default="small")
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--no-peers", action="store_true", help="skip the peer tools")
    parser.add_argument(
        "--no-variants", action="store_true", help="skip ckptstore with techniques turned off"
    )
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--report", help="name of the report (default: corpora-SCALE)")
    args = parser.parse_args()
    name = args.report or f"corpora-{args.scale}"
    out = WORK / f"corpus-{args.scale}"
    rows = {}
    for corpus in args.corpora:
        print(f"{corpus} ...", flush=True)
        rows[corpus] = run_corpus(
            corpus, out, args.scale, args.checkpoints, not args.no_peers, not args.no_variants
        )
    for r in rows.values():
        r["comparisons"] = comparisons(r)
    lines = report_lines(rows, args)
    md = save_report(name, "Checkpoint corpora", lines, rows)
    pngs = plot(rows, md.stem)
    lines += ["", "## Plots", "", *(f"![{p.stem}]({p.name})" for p in pngs)]
    md = save_report(name, "Checkpoint corpora", lines, rows)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
