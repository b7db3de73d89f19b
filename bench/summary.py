"""One report from the newest result of each bench, and the README's table from it.

    python -m bench.summary

Reads the newest ``bench/results/*-{corpora-small,targets,engine,server-w2,client}.json``,
writes ``bench/results/<date>-<host>.md`` and ``.json``, and rewrites the part
of README.md between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.common import RESULTS, save_report

README = Path(__file__).parent.parent / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def newest(part: str) -> tuple[Path, dict] | None:
    """The newest report of a bench (by date, then by when it was written), or None."""
    found = sorted(
        RESULTS.glob(f"????-??-??-*-{part}.json"), key=lambda p: (p.name[:10], p.stat().st_mtime)
    )
    if not found:
        return None
    return found[-1], json.loads(found[-1].read_text())


def corpora_lines(path: Path, data: dict) -> list[str]:
    show = ("restic", "borg zstd,3", "zstd -3 --patch-from", "ZipNN delta", "z4ai delta")
    lines = [
        f"Checkpoint corpora ({link(path)}): six saves"
        " per corpus from real, seeded training runs, ingested as one job. Ratio = logical /"
        " stored bytes; speeds in MB/s on a 2-core x86_64 machine. *put*: a save; *ingest,"
        " with rebases*: every save and re-encoding back to back; *deepest*: a checkpoint k"
        " saves old decodes k + 1 payloads per block.",
        "",
        "| corpus | ckptstore | "
        + " | ".join(show)
        + " | put | ingest, with rebases | restore (last) | restore (deepest) |",
        "|---|---:|" + "---:|" * (len(show) + 4),
    ]
    for name, row in data.items():
        ours = row["ckptstore"]
        peers = [row["peers"].get(p, {}).get("ratio") for p in show]
        cells = [f"{ours['ratio']:.2f}x"] + ["-" if r is None else f"{r:.2f}x" for r in peers]
        cells += [
            f"{ours.get('put_mb_s', ours['ingest_mb_s']):,.0f}",
            f"{ours['ingest_mb_s']:,.0f}",
            f"{ours['restore_last_mb_s']:,.0f}",
            f"{ours['restore_deepest_mb_s']:,.0f} (depth {ours['deepest_depth']})",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    plots = sorted(RESULTS.glob(f"{path.stem}-*.png"))
    if plots:
        lines += ["", "Plots: " + ", ".join(f"[{p.stem}](bench/results/{p.name})" for p in plots)]
    return lines


def link(path: Path) -> str:
    return f"[`{path.stem}.md`](bench/results/{path.stem}.md)"


def engine_lines(path: Path, data: dict) -> list[str]:
    runs = data["engine"]
    engine = runs.get("default") or runs["zstd-1 + byte planes (default)"]
    return [
        f"Engine, 1 GB of unique float32 weights ({link(path)}):"
        f" unique ingest {engine['unique']:,.0f} MB/s, duplicate ingest"
        f" {engine['duplicate']:,.0f} MB/s, restore {engine['restore']:,.0f} MB/s, stored ratio"
        f" {engine['stored_ratio']:.3f} (zstd-1 alone {data['limits']['zstd1_ratio']:.3f}).",
    ]


def server_lines(path: Path, data: dict) -> list[str]:
    listing = data["list"]
    return [
        f"Server with {data['workers']} workers ({link(path)}):"
        f" list {listing['rps']:,.0f} req/s at 32 clients (p50 {listing['p50_ms']:.0f} ms, p99"
        f" {listing['p99_ms']:.0f} ms), download {data['download_mb_s']:,.0f} MB/s, raw upload"
        f" {data['upload_mb_s']:,.0f} MB/s, dedup-aware upload of an unchanged 1 GB checkpoint"
        f" {data['dedup_upload_s']:.2f} s.",
    ]


def client_lines(path: Path, data: dict) -> list[str]:
    return [
        f"Client push ({link(path)}) of a 1 GB checkpoint"
        f" with {data['changed']:.0%} changed: {data['changed_push_s']:.2f} s and"
        f" {data['changed_sent'] / 1e6:,.0f} MB sent, beside {data['plain_upload_s']:.2f} s for"
        " a plain upload.",
    ]


def targets_lines(path: Path, data: dict) -> list[str]:
    targets = data["targets"]
    met = sum(t["met"] is True for t in targets)
    return [
        f"Performance targets, each beside the peer it is held against ({link(path)}):"
        f" {met} of {len(targets)} met.",
    ]


def main() -> None:
    render = {
        "targets": targets_lines,
        "corpora-small": corpora_lines,
        "engine": engine_lines,
        "server-w2": server_lines,
        "client": client_lines,
    }
    lines: list[str] = []
    combined: dict[str, dict] = {}
    for part in ("corpora-small", "targets", "engine", "server-w2", "client"):
        found = newest(part)
        if found is None:
            lines += [f"No {part} result yet.", ""]
            continue
        path, data = found
        combined[part] = {"report": path.name, **data}
        lines += [*render[part](path, data), ""]
    md = save_report("", "ckptstore benchmarks", lines, combined)
    text = README.read_text()
    if BEGIN in text and END in text:
        block = "\n".join([BEGIN, "", *lines, END])
        README.write_text(re.sub(f"{BEGIN}.*?{END}", lambda _: block, text, flags=re.S))
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
