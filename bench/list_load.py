"""List throughput alone, on SQLite and PostgreSQL, several runs each.

    python -m bench.list_load [--catalogs sqlite postgres] [--runs 3] [--seconds 5]

The list load of bench/server.py (a job of 1,000 checkpoints, pages of 50, 32
clients, wrk when installed) against ``ckptstore serve --workers 2``, repeated
``--runs`` times on one populated store per catalog, so that a change to the
list path can be compared run against run on a shared machine. Each run also
reports the server processes' CPU time per request (user and system, all
workers): on a shared machine a steadier figure than the request rate.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import uuid
from pathlib import Path

import psutil

from bench.catalogs import DEFAULT_POSTGRES, _admin, _with_schema
from bench.common import WORK, save_report
from bench.server import measure_list_load, populate
from ckptstore.testing.live_server import live_server

CLIENTS = 32


def server_cpu_s(data_dir: Path) -> float:
    """CPU seconds used so far by the ``ckptstore serve`` of ``data_dir`` and its workers."""
    (serve,) = (
        p
        for p in psutil.process_iter(["cmdline"])
        if "serve" in (p.info["cmdline"] or []) and str(data_dir) in (p.info["cmdline"] or [])
    )
    total = 0.0
    for proc in [serve, *serve.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def runs(catalog_kind: str, postgres: str, count: int, seconds: float) -> list[dict[str, float]]:
    """``count`` list loads against one populated store."""
    root = WORK / f"list-load-{catalog_kind}"
    shutil.rmtree(root, ignore_errors=True)
    schema = f"ckpt_bench_{uuid.uuid4().hex[:10]}"
    catalog = None
    if catalog_kind == "postgres":
        _admin(postgres, f"CREATE SCHEMA {schema}")
        catalog = _with_schema(postgres, schema)
    try:
        key = populate(root / "data", catalog)
        env = {"CKPTSTORE_CATALOG": catalog} if catalog else {}
        headers = {"Authorization": f"Bearer {key}"}
        found = []
        with live_server(root / "data", workers=2, env=env) as base:
            for _ in range(count):
                cpu_before = server_cpu_s(root / "data")
                result = measure_list_load(base, headers, CLIENTS, seconds)
                cpu_s = server_cpu_s(root / "data") - cpu_before
                result["server_cpu_ms"] = 1000 * cpu_s / result["requests"]
                found.append(result)
        return found
    finally:
        if catalog_kind == "postgres":
            _admin(postgres, f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalogs", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--name", default="list-load", help="the report's name suffix")
    args = parser.parse_args()
    found = {kind: runs(kind, args.postgres, args.runs, args.seconds) for kind in args.catalogs}
    lines = [
        f"`ckptstore serve --workers 2` on loopback, {CLIENTS} clients listing a job of 1,000"
        " checkpoints (pages of 50); the load generator shares the server's cores.",
        "",
        "Server CPU: the server processes' CPU time (user and system, all workers) per"
        " request answered.",
        "",
        "| catalog | run | req/s | p50 ms | p99 ms | server CPU ms/req | client |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for kind, results in found.items():
        for i, r in enumerate(results):
            lines.append(
                f"| {kind} | {i + 1} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f}"
                f" | {r['server_cpu_ms']:.2f} | {r['client']} |"
            )
        median_rps = statistics.median(r["rps"] for r in results)
        median_p99 = statistics.median(r["p99_ms"] for r in results)
        median_cpu = statistics.median(r["server_cpu_ms"] for r in results)
        lines.append(
            f"| {kind} | median | {median_rps:,.0f} | | {median_p99:.1f} | {median_cpu:.2f} | |"
        )
    md = save_report(args.name, "List throughput", lines, {"runs": found, "args": vars(args)})
    print(md.read_text())


if __name__ == "__main__":
    main()
