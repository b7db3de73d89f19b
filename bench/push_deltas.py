"""Bytes a push sends per save beside what the store keeps of that save.

    python -m bench.push_deltas [--scale small] [--saves 3] [--no-deltas] [--turns N]
        [--corpora bf16 pretrain] [--name NAME]

The bf16 and pretrain corpora (bench/corpus.py) are pushed save after save from
their files, as a trainer's uploader would, to a real server on loopback. For
each save: the block bytes the client sent (``Client.bytes_sent``), the body
bytes the server received (its ``ckptstore_uploaded_bytes`` metric), and how
much the store's stored bytes grew once that save's rebase ran and GC
compacted what it left dead (the server's metrics). Then the last save is
pushed again, unchanged, and timed (best of three). ``--no-deltas``: the client
sends whole blocks, as before deltas were sent. The same script runs against an
older checkout (PYTHONPATH), whose client has no choice.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import time
from pathlib import Path

import httpx

from bench.common import MB, WORK, save_report
from bench.corpus import write
from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.server.auth import create_api_key
from ckptstore.testing.live_server import live_server

CORPORA = ("bf16", "pretrain")


def metric(base: str, key: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    found = re.search(rf"^ckptstore_{name} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def stored_after_rebase(base: str, key: str) -> float:
    """The store's stored bytes once every rebase ran and GC compacted the packs they
    left entries dead in."""
    deadline = time.monotonic() + 600
    while metric(base, key, "pending_rebases") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    headers = {"Authorization": f"Bearer {key}"}
    httpx.post(f"{base}/v2/gc", params={"grace": 0}, headers=headers, timeout=600)
    return metric(base, key, "stored_bytes")


def client_for(base: str, key: str, deltas: bool) -> Client:
    return Client(base, key) if deltas else Client(base, key, push_deltas=False)


def push_corpus(base: str, key: str, files: list[Path], job: str, deltas: bool) -> list[dict]:
    """Push ``files`` in order, each by a new client (a new process of a trainer's);
    per save, the bytes sent, received and stored."""
    rows = []
    for path in files:
        before = stored_after_rebase(base, key)
        received = metric(base, key, "uploaded_bytes_total")
        with client_for(base, key, deltas) as client:
            start = time.perf_counter()
            client.put(job, path)
            seconds = time.perf_counter() - start
            sent = client.bytes_sent
        rows.append(
            {
                "file": path.name,
                "size": path.stat().st_size,
                "sent": sent,
                "received": metric(base, key, "uploaded_bytes_total") - received,
                "stored": stored_after_rebase(base, key) - before,
                "push_s": seconds,
            }
        )
    return rows


def unchanged_push_s(base: str, key: str, path: Path, job: str, deltas: bool) -> float:
    """The best of three pushes of ``path``, already the job's latest checkpoint."""
    times = []
    with client_for(base, key, deltas) as client:
        for _ in range(3):
            start = time.perf_counter()
            client.put(job, path)
            times.append(time.perf_counter() - start)
    return min(times)


def unchanged_on_off(base: str, key: str, path: Path, job: str, rounds: int) -> dict[str, float]:
    """Median times of pushes of ``path`` (the job's latest) by clients with deltas on and
    off, taking turns (each going first every other turn), so that both see the same
    load, the server's work after the last push included."""
    times: dict[str, list[float]] = {"on": [], "off": []}
    for turn in range(rounds):
        for mode in ("on", "off") if turn % 2 else ("off", "on"):  # each goes first by turns
            with client_for(base, key, mode == "on") as client:
                start = time.perf_counter()
                client.put(job, path)
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(t) for mode, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--no-deltas", action="store_true")
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA)
    parser.add_argument("--name", default="push-deltas")
    parser.add_argument(
        "--turns", type=int, default=0, help="then time unchanged pushes, deltas on and off"
    )
    args = parser.parse_args()
    deltas = not args.no_deltas
    root = WORK / "push_deltas"
    shutil.rmtree(root, ignore_errors=True)
    os.environ["CKPTSTORE_CACHE"] = str(root / "client-cache")
    with CheckpointStore.open(root / "data") as store:
        _, key = create_api_key(store.context.catalog, "bench", "bench", time.time(), admin=True)
    lines = [
        f"Corpora at scale {args.scale}, {args.saves} saves each, pushed in order to a"
        f" server on loopback (deltas {'on' if deltas else 'off'}). Sent: block bytes in"
        " the frames; received: body bytes the server read; stored: growth of the"
        " store's stored bytes once the save's rebase ran.",
        "",
        "| corpus | save | size | sent | received | stored | received / stored | push |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    data: dict[str, object] = {"scale": args.scale, "deltas": deltas}
    results = {}
    with live_server(root / "data") as base:
        for corpus in args.corpora:
            files = write(corpus, WORK / f"corpus-{args.scale}", args.scale, 6)[: args.saves]
            rows = push_corpus(base, key, files, f"bench_{corpus}", deltas)
            again = unchanged_push_s(base, key, files[-1], f"bench_{corpus}", deltas)
            results[corpus] = rows, again
            if args.turns:
                turns = unchanged_on_off(base, key, files[-1], f"bench_{corpus}", args.turns)
                data[f"{corpus}_unchanged_median_s"] = turns
    for corpus, (rows, again) in results.items():
        data[corpus] = {"saves": rows, "unchanged_push_s": again}
        for i, row in enumerate(rows, 1):
            ratio = row["received"] / row["stored"] if row["stored"] > 0 else float("nan")
            lines.append(
                f"| {corpus} | {i} | {row['size'] / MB:.1f} MB | {row['sent'] / MB:.2f} MB |"
                f" {row['received'] / MB:.2f} MB | {row['stored'] / MB:.2f} MB |"
                f" {ratio:.2f} | {row['push_s']:.2f} s |"
            )
        lines.append(f"| {corpus} | last, unchanged | | 0 | | | | {again:.3f} s |")
    for corpus in args.corpora:
        if (turns := data.get(f"{corpus}_unchanged_median_s")) is not None:
            assert isinstance(turns, dict)
            lines.append(
                f"\n{corpus}, last save pushed again unchanged, {args.turns} turns each:"
                f" median {turns['on']:.3f} s with deltas on, {turns['off']:.3f} s off."
            )
    shutil.rmtree(root, ignore_errors=True)
    md = save_report(args.name, "Bytes sent per push beside bytes stored", lines, data)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
