"""Pulls by blocks beside a plain download of the bytes.

    python -m bench.pull [--size-mb 64] [--corpus pretrain]

Two saves of a job (bf16 weights, the second changing a third of the values a
little) are pushed to a real server on loopback; the older is then stored as
deltas on the newer. Reported, each as bytes received against the stored size
and the raw size, with the pull's speed: the newest through its signed URL (raw
bytes, unchecked, and checked as the client checked them before: cut and hashed
against the ETag), the newest pulled by blocks cold, the older pulled cold, and
the newest pulled with the older in the download cache. With ``--corpus``, the
last two saves of that bench corpus (torch.save files, scale small) instead.
Then the older checkpoint's frames as a local store sends them, with stored
chains allowed whatever they cost against the default rule (chains over 5%
dearer than whole go whole).
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from bench.common import MB, WORK, save_report
from bench.corpus import write
from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.server.auth import create_api_key
from ckptstore.store import blockfetch
from ckptstore.store.chunking.fingerprint import fingerprint
from ckptstore.store.ids import content_digest
from ckptstore.testing.formats import safetensors_bytes
from ckptstore.testing.live_server import live_server


def weights(step: int, size_bytes: int) -> bytes:
    tensors = {}
    per = 4_000_000
    for i in range(max(1, size_bytes // (2 * per))):
        values = np.random.default_rng(i).standard_normal(per).astype(np.float32) * 0.02
        if step:
            rng = np.random.default_rng(1000 * step + i)
            changed = rng.random(per) < 0.3
            values[changed] += rng.standard_normal(int(changed.sum())).astype(np.float32) * 1e-3
        tensors[f"layer{i}.weight"] = (values.view(np.uint32) >> 16).astype(np.uint16)
    return safetensors_bytes(tensors)


def signed_and_checked(client: Client, checkpoint_id: str, path: Path) -> int:
    """What Client.restore did before pulls by blocks: the raw bytes through the signed
    URL into a file, then cut and hashed to check them against the ETag."""
    url = client.download_url(checkpoint_id)
    with httpx.stream("GET", url, timeout=600) as response, open(path, "wb") as out:
        etag = response.headers["etag"].strip('"')
        for chunk in response.iter_raw(1 << 20):
            out.write(chunk)
    with ThreadPoolExecutor(2) as pool:
        ids = (bid for bid, _ in fingerprint(path, client.chunker(), pool))
        if content_digest(ids) != etag:
            raise SystemExit("the signed download does not match its ETag")
    return path.stat().st_size


def stored_of(store: CheckpointStore, checkpoint_id: str) -> int:
    blocks = {r.block_id: r.stored_len for _, r in store.context.catalog.manifest(checkpoint_id)}
    return sum(blocks.values())


def frames_of(store: CheckpointStore, checkpoint_id: str) -> tuple[int, float]:
    """Bytes and seconds of the frames a cold pull of the checkpoint gets."""
    manifest = store.context.catalog.manifest(checkpoint_id)
    start = time.perf_counter()
    fetch = blockfetch.BlockFetch(store.context, "bench", [(r.block_id, None) for _, r in manifest])
    sent = sum(len(frame) for frame in fetch.frames())
    return sent, time.perf_counter() - start


def delta_frames_of(store: CheckpointStore, newest: str, held: str) -> tuple[int, float]:
    """Bytes and seconds of the frames a pull of ``newest`` holding ``held`` gets."""
    catalog = store.context.catalog
    found = blockfetch.listing(
        store.context, catalog.get_checkpoint(newest), catalog.get_checkpoint(held)
    )
    held_ids = [r.block_id for _, r in catalog.manifest(held)]
    assert found.held_bases is not None
    wanted = [
        (bid, held_ids[index] if index >= 0 and held_ids[index] != bid else None)
        for bid, index in zip(found.block_ids, found.held_bases, strict=True)
        if index < 0 or held_ids[index] != bid
    ]
    start = time.perf_counter()
    fetch = blockfetch.BlockFetch(store.context, "bench", wanted)
    sent = sum(len(frame) for frame in fetch.frames())
    return sent, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--corpus", default=None)
    args = parser.parse_args()
    root = WORK / "pull"
    shutil.rmtree(root, ignore_errors=True)
    if args.corpus:
        *_, before, after = write(args.corpus, WORK / "corpus-small", "small", 3)
        old, new = before.read_bytes(), after.read_bytes()
        what = f"The last two of three saves of the {args.corpus} corpus (scale small)"
    else:
        old, new = weights(0, args.size_mb * MB), weights(1, args.size_mb * MB)
        what = "Two saves of bf16 weights, the second changing 30% of the values a little"
    with CheckpointStore.open(root / "data") as store:
        _, key = create_api_key(store.context.catalog, "bench", "bench", time.time())
    rows: list[tuple[str, int, float, str]] = []
    with live_server(root / "data", workers=2) as base, Client(base, key) as client:
        first = client.put("bench_pull", old)
        second = client.put("bench_pull", new)
        with CheckpointStore.open(root / "data") as store:
            stored_new = stored_of(store, second.checkpoint_id)
            deadline = time.monotonic() + 300
            # the server stores the older as deltas on the newer in the background
            while (stored_old := stored_of(store, first.checkpoint_id)) > 0.9 * stored_new:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not rebase the older checkpoint")
                time.sleep(0.5)
        start = time.perf_counter()
        plain = len(httpx.get(client.download_url(second.checkpoint_id), timeout=600).content)
        rows.append(("newest, signed URL, unchecked", plain, time.perf_counter() - start, "newest"))
        start = time.perf_counter()
        checked = signed_and_checked(client, second.checkpoint_id, root / "signed.bin")
        rows.append(
            ("newest, signed URL, checked (before)", checked, time.perf_counter() - start, "newest")
        )
        for name, record, kind in (
            ("newest, by blocks, cold", second, "newest"),
            ("older (stored as deltas), by blocks, cold", first, "older"),
        ):
            before, start = client.bytes_received, time.perf_counter()
            client.restore(record.checkpoint_id, root / "out.bin")
            got = client.bytes_received - before
            rows.append((name, got, time.perf_counter() - start, kind))
        cache = root / "cache"
        client.download(first.checkpoint_id, cache_dir=cache)
        before, start = client.bytes_received, time.perf_counter()
        client.download(second.checkpoint_id, cache_dir=cache)
        got = client.bytes_received - before
        rows.append(("newest, the older in the cache", got, time.perf_counter() - start, "delta"))
    with CheckpointStore.open(root / "data") as store:
        chosen, chosen_s = frames_of(store, first.checkpoint_id)
        blockfetch.CHAIN_SLACK = math.inf
        chains, chains_s = frames_of(store, first.checkpoint_id)
        ungrouped, ungrouped_s = delta_frames_of(store, second.checkpoint_id, first.checkpoint_id)
        blockfetch.DELTA_GROUP_LOG = store.context.codec.delta_group_log
        grouped, grouped_s = delta_frames_of(store, second.checkpoint_id, first.checkpoint_id)
    shutil.rmtree(root, ignore_errors=True)
    raw = len(new)
    against = {"newest": stored_new, "older": stored_old, "delta": stored_old}
    lines = [
        f"{what}: {raw / MB:,.0f} MB. Stored: newest {stored_new / MB:,.1f} MB (whole), older"
        f" {stored_old / MB:,.1f} MB (deltas on the newest). Server: 2 uvicorn workers on"
        " loopback, sharing the 2 cores with the client (and other work: noisy).",
        "",
        "| pull | received | / stored | / raw | MB/s (raw) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, got, seconds, kind in rows:
        lines.append(
            f"| {name} | {got / MB:,.2f} MB | {got / against[kind]:.3f} | {got / raw:.3f} |"
            f" {raw / seconds / MB:,.0f} |"
        )
    lines += [
        "",
        "Stored for the older one: its deltas. For the pull with the older in the cache:"
        " the stored delta between them (the older's blocks).",
        "",
        f"Older checkpoint, frames from a local store: chains whatever they cost"
        f" {chains / MB:,.2f} MB in {chains_s:.2f} s; the default rule"
        f" {chosen / MB:,.2f} MB in {chosen_s:.2f} s ({chains / chosen:.2f}x the bytes with"
        " chains).",
        "",
        f"Newest with the older held, frames from a local store: deltas encoded for the"
        f" answer ungrouped (the default) {ungrouped / MB:,.2f} MB in {ungrouped_s:.2f} s;"
        f" grouped by exponent as stored deltas are {grouped / MB:,.2f} MB in"
        f" {grouped_s:.2f} s.",
    ]
    md = save_report(
        "pull" + (f"-{args.corpus}" if args.corpus else ""),
        "Pulls by blocks",
        lines,
        {
            "raw": raw,
            "stored_newest": stored_new,
            "stored_older": stored_old,
            "pulls": [{"name": n, "received": g, "seconds": s} for n, g, s, _ in rows],
            "older_frames_chains": chains,
            "older_frames_chains_s": chains_s,
            "older_frames_default": chosen,
            "older_frames_default_s": chosen_s,
            "delta_frames_ungrouped": ungrouped,
            "delta_frames_ungrouped_s": ungrouped_s,
            "delta_frames_grouped": grouped,
            "delta_frames_grouped_s": grouped_s,
        },
    )
    print(Path(md).read_text())


if __name__ == "__main__":
    main()
