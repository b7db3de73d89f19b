"""Server throughput against a real uvicorn on loopback.

    python -m bench.server [--size-mb 1024] [--workers 1] [--seconds 5]

- list: a job holding 1,000 checkpoints, 32 concurrent clients, requests/s, p50/p99
- one-stream signed download MB/s
- raw upload MB/s of unique data (PUT .../data)
- dedup-aware upload of an unchanged checkpoint: seconds, with the client's
  own chunking and hashing included
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import MB, WORK, float32_weights, save_report, write_file
from ckptstore import CheckpointStore
from ckptstore.server.auth import create_api_key
from ckptstore.store.chunking.fingerprint import fingerprint
from ckptstore.testing.live_server import live_server

JOB = "bench_job"
TARGETS = {"list_rps": 800, "list_p99_ms": 50, "download": 400, "upload": 250, "dedup_s": 2}


def populate(data_dir: Path, catalog: str | None = None) -> str:
    with CheckpointStore.open(data_dir, catalog=catalog) as store:
        _, key = create_api_key(store.context.catalog, "bench", "bench", time.time())
        for i in range(1000):
            store.put(
                JOB,
                i.to_bytes(4, "little") * 256,
                epoch=i,
                step=i * 100,
                tenant="bench",
                metrics={"loss": 1 / (i + 1), "validationLoss": 1.1 / (i + 1)},
            )
    return key


def list_load_wrk(base: str, headers: dict, clients: int, seconds: float) -> dict[str, float]:
    """The list load from wrk (C, little CPU of its own), when it is installed."""
    ((name, value),) = headers.items()
    done = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{clients}",
            f"-d{seconds:.0f}s",
            "--latency",
            "-H",
            f"{name}: {value}",
            f"{base}/v2/training/jobs/{JOB}/checkpoints",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout

    def latency_ms(label: str) -> float:
        # a line of wrk's "Latency Distribution", such as "     99%   12.34ms" (not the
        # "+/- Stdev" column of its thread stats, which may also end in "50%")
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"no {label}% latency in wrk's output:\n{text}")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        return float(found.group(1)) * scale[found.group(2)]

    rps = float(text.split("Requests/sec:")[1].split()[0])
    requests = int(text.split(" requests in ")[0].split()[-1])
    if "Non-2xx" in text:
        raise RuntimeError(f"wrk saw errors:\n{text}")
    return {
        "rps": rps,
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "client": "wrk",
        "requests": requests,
    }


def measure_list_load(base: str, headers: dict, clients: int, seconds: float) -> dict:
    """The list load by wrk where it is installed (``make bench-peers``), else by the
    Python client (heavier: it takes CPU from the server it measures)."""
    if shutil.which("wrk"):
        return list_load_wrk(base, headers, clients, seconds)
    return asyncio.run(list_load(base, headers, clients, seconds))


async def list_load(base: str, headers: dict, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    url = f"{base}/v2/training/jobs/{JOB}/checkpoints"
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                r = await client.get(url)
                r.raise_for_status()
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "client": "httpx (Python; install wrk for a lighter client)",
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "requests": len(latencies),
    }


def create(base: str, headers: dict) -> str:
    r = httpx.post(
        f"{base}/v2/training/jobs/upload_job/checkpoints",
        headers=headers,
        json={"type": "automatic"},
    )
    r.raise_for_status()
    return r.json()["checkpointId"]


def raw_upload(base: str, headers: dict, path: Path) -> tuple[float, str]:
    cid = create(base, headers)

    def body():
        with open(path, "rb") as f:
            while chunk := f.read(4 << 20):
                yield chunk

    start = time.perf_counter()
    r = httpx.put(
        f"{base}/v2/training/checkpoints/{cid}/data", headers=headers, content=body(), timeout=600
    )
    r.raise_for_status()
    return path.stat().st_size / MB / (time.perf_counter() - start), r.json()["downloadUrl"]


def download(url: str, size: int) -> float:
    start = time.perf_counter()
    got = 0
    with httpx.stream("GET", url, timeout=600) as r:
        for chunk in r.iter_raw(1 << 20):
            got += len(chunk)
    assert got == size
    return size / MB / (time.perf_counter() - start)


def dedup_upload(base: str, headers: dict, path: Path, chunker) -> float:
    """Fingerprint locally, ask which blocks are missing, commit; seconds for all of it."""
    cid = create(base, headers)
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        ids = [bid.hex() for bid, _ in fingerprint(path, chunker, pool)]
    url = f"{base}/v2/training/checkpoints/{cid}"
    missing = httpx.post(
        f"{url}/blocks/missing", headers=headers, json={"blockIds": ids}, timeout=600
    ).json()["missing"]
    assert not missing, f"{len(missing)} blocks missing from an unchanged checkpoint"
    r = httpx.post(f"{url}/commit", headers=headers, json={"blockIds": ids}, timeout=600)
    r.raise_for_status()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    root = WORK / "server"
    shutil.rmtree(root, ignore_errors=True)
    data_dir = root / "data"
    key = populate(data_dir)
    path = write_file(root / "weights.bin", float32_weights(args.size_mb * MB, seed=11))
    os.sync()
    headers = {"Authorization": f"Bearer {key}"}
    with live_server(data_dir, workers=args.workers) as base:
        listing = measure_list_load(base, headers, 32, args.seconds)
        upload_mb_s, url = raw_upload(base, headers, path)
        download_mb_s = download(url, path.stat().st_size)
        with CheckpointStore.open(data_dir) as store:
            chunker = store.context.chunker
        dedup_s = dedup_upload(base, headers, path, chunker)
    shutil.rmtree(root, ignore_errors=True)
    lines = [
        f"uvicorn with {args.workers} worker(s) on loopback; list load from {listing['client']};"
        " clients share the server's 2 cores, so every figure includes their CPU use.",
        "",
        "| measure | result | target |",
        "|---|---:|---:|",
        f"| list (1,000 checkpoints, limit 50), 32 clients | {listing['rps']:,.0f} req/s"
        f" | >= {TARGETS['list_rps']} |",
        f"| list p50 / p99 | {listing['p50_ms']:.1f} / {listing['p99_ms']:.1f} ms"
        f" | p99 < {TARGETS['list_p99_ms']} |",
        f"| one-stream signed download | {download_mb_s:,.0f} MB/s | >= {TARGETS['download']} |",
        f"| raw upload, unique data | {upload_mb_s:,.0f} MB/s | >= {TARGETS['upload']} |",
        f"| dedup-aware upload of an unchanged {args.size_mb} MB checkpoint"
        f" (client chunking and hashing included) | {dedup_s:.2f} s | < {TARGETS['dedup_s']} |",
    ]
    md = save_report(
        f"server-w{args.workers}",
        "Server throughput",
        lines,
        {
            "list": listing,
            "download_mb_s": download_mb_s,
            "upload_mb_s": upload_mb_s,
            "dedup_upload_s": dedup_s,
            "workers": args.workers,
        },
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
