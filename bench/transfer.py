"""Bytes on the wire between the client and a real server, beside the bytes stored.

    python -m bench.transfer [--scale small] [--checkpoints 6] [--big-mb 1024] [--name transfer]

A ``ckptstore serve`` process whose public URL (so every signed download URL too)
is a byte-counting TCP proxy (bench/byte_proxy.py); the client talks to the proxy.
On the bf16 and pretrain corpora of bench/corpus.py (files in save order) and on
a folder per save holding both files:

- push of each save in order (``Client.put``): bytes sent up, and the store's
  growth for that save once its rebase has settled; their ratio;
- pull of each checkpoint into an empty download cache (``Client.download``):
  bytes received beside the stored size of its blocks (alone, and with the delta
  bases they need) and its raw size;
- pull of checkpoint N with N-1 in the download cache: bytes received beside the
  store's growth for save N (what the change from N-1 costs in the store).

Speed, on a store of its own and without the proxy: a
pull of the newest checkpoint (a synthetic file of float tensors) on one stream,
and a push of it unchanged (a second push of the same file), beside a plain copy
and ``zstd -3 -T2`` of the file. The client runs only public methods, so the
figures follow whatever transfer the client and server use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.byte_proxy import ByteProxy, Traffic
from bench.common import MB, WORK, float32_weights, save_report
from bench.corpus import write as write_corpus
from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.server.auth import create_api_key
from ckptstore.store.catalog import Catalog, CheckpointRecord, open_catalog
from ckptstore.store.gc import GcLock, GcReport
from ckptstore.testing.live_server import live_server

CORPORA = ("bf16", "pretrain")
TENSOR_BYTES = 16 << 20  # one tensor of the synthetic file
SETTLE_TIMEOUT_S = 300
REPEAT = 3  # runs of each timed transfer of the synthetic file; the best is reported


@dataclass(frozen=True)
class Push:
    save: str
    raw_bytes: int
    up_bytes: int
    down_bytes: int
    stored_growth: int
    seconds: float


@dataclass(frozen=True)
class Pull:
    checkpoint: str
    raw_bytes: int
    down_bytes: int
    up_bytes: int
    stored_own: int  # pack entries of its blocks
    stored_needed: int  # with the delta bases they need, as a cold reader does
    stored_delta: int  # the store's growth when this save was pushed
    seconds: float


class Bench:
    """One store served through the byte-counting proxy: its catalog, read directly."""

    def __init__(self, data_dir: Path, proxy: ByteProxy, catalog: Catalog) -> None:
        self.data_dir = data_dir
        self.proxy = proxy
        self.catalog = catalog

    def settle(self) -> int:
        """Wait until no rebase is pending, no compaction runs and every upload's
        SHA-256 is known (the server reads an upload back for it: work that would
        otherwise overlap the next timed transfer); the stored bytes."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self.catalog.stats().pending_rebases or self.catalog.undigested():
            if time.monotonic() > deadline:
                raise TimeoutError("rebases still pending")
            time.sleep(0.05)
        GcLock(self.data_dir).run(GcReport, wait=True)  # waits out a compaction
        return self.catalog.stats().stored_bytes

    def counted(self, fn: Callable[[], object]) -> tuple[Traffic, float]:
        """The bytes ``fn()`` moved through the proxy, and its seconds."""
        before = self.proxy.traffic()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        return self.proxy.traffic() - before, seconds

    def stored_sizes(self, checkpoint_id: str) -> tuple[int, int]:
        """Pack-entry bytes of the checkpoint's blocks, and with their delta bases."""
        own = {record.block_id: record for _, record in self.catalog.manifest(checkpoint_id)}
        needed = dict(own)
        bases = {r.base_id for r in own.values() if r.base_id is not None} - needed.keys()
        while bases:
            found = self.catalog.get_blocks(sorted(bases))
            needed.update(found)
            bases = {r.base_id for r in found.values() if r.base_id is not None} - needed.keys()
        return sum(r.entry_len for r in own.values()), sum(r.entry_len for r in needed.values())


@contextmanager
def served(data_dir: Path, *, proxied: bool) -> Iterator[tuple[Bench, Client, Client]]:
    """A new store under a ``ckptstore serve``; a client through the proxy and a direct
    one. ``proxied``: the signed URLs point at the proxy (else at the server)."""
    with CheckpointStore.open(data_dir) as store:
        _, key = create_api_key(store.context.catalog, "bench", "transfer", time.time())
    catalog = open_catalog(data_dir / "catalog.sqlite")
    try:
        with ByteProxy() as proxy:
            env = {"CKPTSTORE_PUBLIC_URL": proxy.url} if proxied else {}
            with (
                live_server(data_dir, env=env) as base,
                Client(proxy.url, key) as counted,
                Client(base, key) as direct,
            ):
                proxy.forward_to(base)
                yield Bench(data_dir, proxy, catalog), counted, direct
    finally:
        catalog.close()


def push_all(bench: Bench, client: Client, job: str, saves: list[Path]) -> list[tuple[str, Push]]:
    """Each save in order; the checkpoint id and what its push cost."""
    stored = bench.settle()
    done = []
    for path in saves:
        records: list[CheckpointRecord] = []
        put = lambda p=path, r=records: r.append(client.put(job, p))  # noqa: E731
        traffic, seconds = bench.counted(put)
        now = bench.settle()
        push = Push(path.name, _size(path), traffic.up, traffic.down, now - stored, seconds)
        done.append((records[0].checkpoint_id, push))
        stored = now
    return done


def pulls(
    bench: Bench, client: Client, pushed: list[tuple[str, Push]], tmp: Path, *, warm: bool
) -> list[Pull]:
    """Each checkpoint into an empty download cache, or (``warm``) each from the second
    into a cache holding the one before."""
    done = []
    held: list[str | None] = [None] + [cid for cid, _ in pushed[:-1]]
    for before, (cid, push) in zip(held, pushed, strict=True):
        if warm and before is None:
            continue
        cache = _fresh(tmp / "cache")
        if warm and before is not None:
            client.download(before, cache)
        traffic, seconds = bench.counted(lambda c=cid, d=cache: client.download(c, d))  # type: ignore[misc]
        own, needed = bench.stored_sizes(cid)
        done.append(
            Pull(
                cid,
                push.raw_bytes,
                traffic.down,
                traffic.up,
                own,
                needed,
                push.stored_growth,
                seconds,
            )
        )
    shutil.rmtree(tmp / "cache", ignore_errors=True)
    return done


def speed(bench: Bench, counted: Client, direct: Client, big: Path, tmp: Path) -> dict[str, float]:
    """Pushes and pulls of ``big`` on the direct client (best of ``REPEAT``), a copy and
    zstd of it, and the bytes of an unchanged push through the proxy."""
    size = _size(big)
    first_s = _seconds(lambda: direct.put("synthetic", big))
    bench.settle()
    unchanged_s = []
    for _ in range(REPEAT):
        unchanged_s.append(_seconds(lambda: direct.put("synthetic", big)))
        bench.settle()
    newest = direct.list("synthetic", limit=1).checkpoints[0].checkpoint_id
    pull_s = []
    for _ in range(REPEAT):
        cache = _fresh(tmp / "cache")
        pull_s.append(_seconds(lambda d=cache: direct.download(newest, d)))  # type: ignore[misc]
        shutil.rmtree(cache)
    traffic, _ = bench.counted(lambda: counted.put("synthetic", big))
    copy = tmp / "copy.bin"
    copy_s = min(_seconds(lambda: shutil.copyfile(big, copy)) for _ in range(REPEAT))
    copy.unlink()
    zstd_s = min(_zstd_seconds(big) for _ in range(REPEAT))
    return {
        "size_bytes": size,
        "push_new_s": first_s,
        "push_unchanged_s": min(unchanged_s),
        "push_unchanged_runs_s": unchanged_s,  # type: ignore[dict-item]
        "pull_newest_s": min(pull_s),
        "pull_newest_runs_s": pull_s,  # type: ignore[dict-item]
        "pull_newest_mb_s": size / MB / min(pull_s),
        "copy_s": copy_s,
        "zstd3_t2_s": zstd_s,
        "unchanged_push_up_bytes": traffic.up,
        "unchanged_push_down_bytes": traffic.down,
    }


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _zstd_seconds(path: Path) -> float:
    if shutil.which("zstd") is None:
        return float("nan")
    start = time.perf_counter()
    subprocess.run(
        ["zstd", "-3", "-T2", "-q", "-c", str(path)], stdout=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - start


def write_tensors(path: Path, n_bytes: int) -> Path:
    """A safetensors file of float32 tensors (N(0, 0.02)), ``TENSOR_BYTES`` each."""
    count = max(1, round(n_bytes / TENSOR_BYTES))
    side = int((TENSOR_BYTES // 4) ** 0.5)
    header: dict[str, object] = {}
    for i in range(count):
        start = i * side * side * 4
        header[f"layers.{i}.weight"] = {
            "dtype": "F32",
            "shape": [side, side],
            "data_offsets": [start, start + side * side * 4],
        }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for chunk in float32_weights(count * side * side * 4, seed=25):
            out.write(chunk)
    return path


def folders(root: Path, corpora: dict[str, list[Path]]) -> list[Path]:
    """A folder per save holding that save's file of each corpus (hard links), under
    the same names in every save, as trainers write their checkpoint folders."""
    saves = []
    for i, files in enumerate(zip(*corpora.values(), strict=False)):
        folder = _fresh(root / f"save_{i + 1}")
        for name, path in zip(corpora, files, strict=True):
            (folder / name).mkdir()
            os.link(path, folder / name / f"state{path.suffix}")
        saves.append(folder)
    return saves


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = WORK / "transfer"
    shutil.rmtree(root, ignore_errors=True)
    out = WORK / f"corpus-{args.scale}"
    corpora = {name: write_corpus(name, out, args.scale, args.checkpoints) for name in CORPORA}
    cases = {**corpora, "folder": folders(root / "folders", corpora)}
    results: dict[str, Any] = {"cases": {}}
    for name, saves in cases.items():
        with served(root / name / "data", proxied=True) as (bench, client, _):
            results["store"] = client.info()
            pushed = push_all(bench, client, name, saves)
            results["cases"][name] = {
                "push": [asdict(push) for _, push in pushed],
                "cold": [asdict(p) for p in pulls(bench, client, pushed, root, warm=False)],
                "warm": [asdict(p) for p in pulls(bench, client, pushed, root, warm=True)],
            }
        print(f"{name}: done", flush=True)
    big = write_tensors(root / "synthetic.safetensors", args.big_mb * MB)
    os.sync()
    with served(root / "synthetic" / "data", proxied=False) as (bench, counted, direct):
        results["speed"] = speed(bench, counted, direct, big, root)
    shutil.rmtree(root, ignore_errors=True)
    return results


def report_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "A `ckptstore serve` (1 worker) behind a byte-counting TCP proxy on loopback; the"
        " signed URLs point at the proxy too. Bytes are everything on the wire, HTTP"
        " headers and JSON included. Stored growth: the store's pack bytes after the save's"
        " rebase settled, minus before. MB = 10^6 bytes.",
        "",
        "## Push of each save",
        "",
        "| case | save | raw MB | sent MB | stored growth MB | sent / growth |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, case in results["cases"].items():
        for p in case["push"]:
            lines.append(
                f"| {name} | {p['save']} | {_mb(p['raw_bytes'])} | {_mb(p['up_bytes'])}"
                f" | {_mb(p['stored_growth'])} | {_ratio(p['up_bytes'], p['stored_growth'])} |"
            )
        lines.append(_push_total(name, case["push"]))
    lines += [
        "",
        "## Pull into an empty download cache",
        "",
        "Stored: the pack entries of the checkpoint's blocks; with bases: and of the delta"
        " bases they need (what a reader with nothing cached must have).",
        "",
        "| case | checkpoint | raw MB | stored MB | stored with bases MB | received MB"
        " | received / stored with bases |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, case in results["cases"].items():
        for i, p in enumerate(case["cold"]):
            lines.append(
                f"| {name} | {i + 1} | {_mb(p['raw_bytes'])} | {_mb(p['stored_own'])}"
                f" | {_mb(p['stored_needed'])} | {_mb(p['down_bytes'])}"
                f" | {_ratio(p['down_bytes'], p['stored_needed'])} |"
            )
    lines += [
        "",
        "## Pull of checkpoint N with N-1 in the download cache",
        "",
        "Stored delta: the store's growth when save N was pushed.",
        "",
        "| case | N | raw MB | stored delta MB | received MB | received / stored delta |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, case in results["cases"].items():
        for i, p in enumerate(case["warm"]):
            lines.append(
                f"| {name} | {i + 2} | {_mb(p['raw_bytes'])} | {_mb(p['stored_delta'])}"
                f" | {_mb(p['down_bytes'])} | {_ratio(p['down_bytes'], p['stored_delta'])} |"
            )
    return lines + _speed_lines(results["speed"])


def _speed_lines(s: dict[str, float]) -> list[str]:
    size = s["size_bytes"]
    return [
        "",
        f"## Speed: a {_mb(size)} MB file of float32 tensors, one client stream",
        "",
        "On a store of its own, without the proxy; the client and server share the"
        f" machine's cores (best of {REPEAT} runs, except the push of new data).",
        "",
        "| measure | seconds | MB/s |",
        "|---|---:|---:|",
        f"| pull of the newest checkpoint (download, checked) | {s['pull_newest_s']:.2f}"
        f" | {size / MB / s['pull_newest_s']:,.0f} |",
        f"| push, new data | {s['push_new_s']:.2f} | {size / MB / s['push_new_s']:,.0f} |",
        f"| push, unchanged (second push of the file) | {s['push_unchanged_s']:.2f}"
        f" | {size / MB / s['push_unchanged_s']:,.0f} |",
        f"| plain copy of the file (page cache) | {s['copy_s']:.2f}"
        f" | {size / MB / s['copy_s']:,.0f} |",
        f"| `zstd -3 -T2` of the file | {s['zstd3_t2_s']:.2f}"
        f" | {size / MB / s['zstd3_t2_s']:,.0f} |",
        "",
        f"An unchanged push sent {_mb(s['unchanged_push_up_bytes'])} MB and received"
        f" {_mb(s['unchanged_push_down_bytes'])} MB (through the proxy).",
    ]


def _push_total(name: str, pushes: list[dict[str, Any]]) -> str:
    raw = sum(p["raw_bytes"] for p in pushes)
    up = sum(p["up_bytes"] for p in pushes)
    growth = sum(p["stored_growth"] for p in pushes)
    return (
        f"| **{name}** | **all** | **{_mb(raw)}** | **{_mb(up)}** | **{_mb(growth)}**"
        f" | **{_ratio(up, growth)}** |"
    )


def _mb(n: float) -> str:
    return f"{n / MB:,.2f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--name", default="transfer", help="the report's name suffix")
    args = parser.parse_args()
    started = time.perf_counter()
    results = run(args)
    results["args"] = vars(args)
    results["seconds"] = time.perf_counter() - started
    md = save_report(
        args.name, "Transfer: bytes on the wire and speed", report_lines(results), results
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
