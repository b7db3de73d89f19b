"""Client push of a changed checkpoint beside a plain upload of the whole file.

    python -m bench.client [--size-mb 1024] [--changed 0.05]

A real server on loopback; the second push differs from the first in
``--changed`` of its bytes (three contiguous regions, as when some layers
change). Reports wall time and block bytes sent. Then the six checkpoints
of the pretrain corpus are pushed in order, and the server's stored ratio
(tensor blocks sent with their slots, stored as deltas) is set beside the
same files ingested by a local store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import httpx
import numpy as np

from bench.common import MB, WORK, float32_weights, save_report, write_file
from bench.corpus import write
from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.server.auth import create_api_key
from ckptstore.testing.live_server import live_server


def changed_copy(src, dst, fraction: float) -> None:
    data = bytearray(src.read_bytes())
    region = int(len(data) * fraction / 3)
    rng = np.random.default_rng(5)
    for start in (len(data) // 6, len(data) // 2, 5 * len(data) // 6):
        data[start : start + region] = rng.integers(0, 256, region, dtype=np.uint8).tobytes()
    dst.write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--changed", type=float, default=0.05)
    args = parser.parse_args()
    root = WORK / "client"
    shutil.rmtree(root, ignore_errors=True)
    first = write_file(root / "v1.bin", float32_weights(args.size_mb * MB, seed=21))
    second = root / "v2.bin"
    changed_copy(first, second, args.changed)
    with CheckpointStore.open(root / "data") as store:
        _, key = create_api_key(store.context.catalog, "bench", "bench", time.time())
    os.sync()
    size = first.stat().st_size
    with live_server(root / "data", workers=2) as base, Client(base, key) as client:
        start = time.perf_counter()
        client.put("bench_push", first)
        first_s, first_sent = time.perf_counter() - start, client.bytes_sent
        start = time.perf_counter()
        client.put("bench_push", second)
        second_s, second_sent = time.perf_counter() - start, client.bytes_sent - first_sent
        pending = client.create_pending("bench_plain", type="automatic")
        start = time.perf_counter()
        with open(second, "rb") as f:
            httpx.put(
                f"{base}/v2/training/checkpoints/{pending.checkpoint_id}/data",
                headers={"Authorization": f"Bearer {key}"},
                content=iter(lambda: f.read(4 << 20), b""),
                timeout=600,
            ).raise_for_status()
        plain_s = time.perf_counter() - start
        corpus = write("pretrain", WORK / "corpus-small", "small", 6)
        logical = sum(path.stat().st_size for path in corpus)
        with CheckpointStore.open(root / "data") as store:  # beside the server, as it may be
            stored_before = store.stats().stored_bytes
        start = time.perf_counter()
        for path in corpus:
            client.put("bench_corpus", path)
        corpus_s = time.perf_counter() - start
    # the server has stopped, and finished its rebases: the stored bytes are final
    with CheckpointStore.open(root / "data") as store:
        stored = store.stats().stored_bytes - stored_before
    with CheckpointStore.open(root / "local") as local:
        for path in corpus:
            local.put("bench_corpus", path)
        local.settle()
        local_stored = local.stats().stored_bytes
    shutil.rmtree(root, ignore_errors=True)
    lines = [
        f"{args.size_mb} MB of float32 weights; the second version differs in"
        f" {args.changed:.0%} of its bytes (three contiguous regions). Server: 2 uvicorn"
        " workers on loopback, sharing the 2 cores with the client.",
        "",
        "| upload | wall time | block bytes sent |",
        "|---|---:|---:|",
        f"| client push, first version (nothing stored yet) | {first_s:.2f} s |"
        f" {first_sent / MB:,.0f} MB |",
        f"| client push, changed version | {second_s:.2f} s | {second_sent / MB:,.1f} MB"
        f" ({second_sent / size:.1%}) |",
        f"| plain upload of the whole changed file (PUT .../data) | {plain_s:.2f} s |"
        f" {size / MB:,.0f} MB (100%) |",
        "",
        f"The pretrain corpus ({logical / MB:,.0f} MB in six torch.save files) pushed in order:"
        f" {logical / MB / corpus_s:,.0f} MB/s, stored at {logical / stored:.2f}x on the server;"
        f" the same files ingested by a local store: {logical / local_stored:.2f}x.",
    ]
    md = save_report(
        "client",
        "Client push",
        lines,
        {
            "size_bytes": size,
            "changed": args.changed,
            "first_push_s": first_s,
            "first_sent": first_sent,
            "changed_push_s": second_s,
            "changed_sent": second_sent,
            "plain_upload_s": plain_s,
            "corpus_logical": logical,
            "corpus_push_s": corpus_s,
            "corpus_stored_remote": stored,
            "corpus_stored_local": local_stored,
        },
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
