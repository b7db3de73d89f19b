"""The performance targets, each beside the peer it is held against, from one bench run.

    python -m bench.targets

Reads the newest ``corpora-small``, ``corpora-medium`` and ``list-load`` reports
under bench/results/ (``make bench`` writes all three first) and writes
``<date>-<host>-targets.{md,json}``: for each target, corpus and scale, what
ckptstore measured, what the peer measured in the same run, their ratio, the
goal and whether it is met. A target whose inputs are missing (a peer not
installed, a report not run) is listed as not measured, never as met.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from bench.common import save_report
from bench.peers import STORE_PEERS
from bench.summary import newest

TENSOR_CORPORA = ("pretrain", "finetune-frozen", "lora", "bf16")
OPAQUE_CORPORA = ("opaque", "opaque-scattered")


@dataclass(frozen=True)
class Target:
    """One line of the report: ``ours`` against ``peer``, ``ratio`` = ours / peer."""

    target: str
    where: str
    ours: float | None
    peer: float | None
    ratio: float | None
    goal: str
    met: bool | None  # None: not measured


def held(
    target: str,
    where: str,
    ours: float | None,
    peer: float | None,
    goal: str,
    ok: Callable[[float], bool],
) -> Target:
    """A target of the form ours / peer against a bound."""
    ratio = ours / peer if ours is not None and peer else None
    return Target(target, where, ours, peer, ratio, goal, None if ratio is None else ok(ratio))


def peer_value(row: dict, peer: str, key: str) -> float | None:
    value = row["peers"].get(peer, {}).get(key)
    return float(value) if value else None


def corpora_targets(scale: str, rows: dict) -> list[Target]:
    """Targets 1, 2, 3 and 5 on one scale's corpora."""
    out = []
    for corpus, row in rows.items():
        ours = row["ckptstore"]
        where = f"{corpus} ({scale})"
        if corpus in TENSOR_CORPORA:
            ingest = ours["ingest_mb_s"]
            out += [
                held(
                    "1. ingest with rebases / ZipNN delta (MB/s)",
                    where,
                    ingest,
                    peer_value(row, "ZipNN delta", "mb_s"),
                    ">= 1.2",
                    lambda r: r >= 1.2,
                ),
                held(
                    "1. ingest with rebases / borg (MB/s)",
                    where,
                    ingest,
                    peer_value(row, "borg zstd,3", "mb_s"),
                    ">= 1.2",
                    lambda r: r >= 1.2,
                ),
                held(
                    "1. restore newest / borg's restore of it (MB/s)",
                    where,
                    ours["restore_last_mb_s"],
                    peer_value(row, "borg zstd,3", "restore_mb_s"),
                    ">= 4",
                    lambda r: r >= 4,
                ),
                held(
                    "1. put / zstd -3 -T2 (MB/s)",
                    where,
                    ours["put_mb_s"],
                    peer_value(row, "zstd -3 -T2", "mb_s"),
                    ">= 1",
                    lambda r: r >= 1,
                ),
            ]
            store_bytes = [
                float(row["peers"][p]["stored_bytes"])
                for p in STORE_PEERS
                if row["peers"].get(p, {}).get("ratio")
            ]
            out.append(
                held(
                    "2. stored bytes / best store peer's",
                    where,
                    float(ours["stored_bytes"]),
                    min(store_bytes) if store_bytes else None,
                    "<= 0.8",
                    lambda r: r <= 0.8,
                )
            )
        if corpus in OPAQUE_CORPORA:
            out.append(
                held(
                    "2. stored bytes / zstd -3 --patch-from's",
                    where,
                    float(ours["stored_bytes"]),
                    peer_value(row, "zstd -3 --patch-from", "stored_bytes"),
                    "<= 1",
                    lambda r: r <= 1,
                )
            )
        out.append(
            held(
                f"3. restore deepest ({ours['deepest_depth']} deep) / newest (MB/s)",
                where,
                ours["restore_deepest_mb_s"],
                ours["restore_last_mb_s"],
                ">= 0.5",
                lambda r: r >= 0.5,
            )
        )
    if scale == "medium" and rows:
        peak = max(row["ckptstore"]["ingest_rss_mb"] for row in rows.values())
        out.append(
            Target(
                "5. peak RSS while ingesting (MB)",
                "medium corpora",
                peak,
                None,
                None,
                "< 300",
                peak < 300,
            )
        )
    return out


def list_targets(data: dict) -> list[Target]:
    """Target 4 on each catalog: the median run's rate and the runs' median p99."""
    out = []
    for catalog, runs in data["runs"].items():
        if not runs:
            continue
        rps = sorted(r["rps"] for r in runs)[len(runs) // 2]
        p99 = sorted(r["p99_ms"] for r in runs)[len(runs) // 2]
        client = runs[0].get("client", "")
        where = f"{catalog}, 32 clients, 2 workers ({client})"
        out.append(
            Target("4. list requests per second", where, rps, None, None, ">= 1,000", rps >= 1000)
        )
        out.append(Target("4. list p99 latency (ms)", where, p99, None, None, "< 50", p99 < 50))
    return out


def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    targets: list[Target] = []
    sources = []
    for scale in ("small", "medium"):
        found = newest(f"corpora-{scale}")
        if found is None:
            targets.append(Target("1-3, 5", f"{scale} corpora", None, None, None, "-", None))
            continue
        sources.append(found[0])
        targets += corpora_targets(scale, found[1])
    found = newest("list-load")
    if found is None:
        targets.append(Target("4", "list load", None, None, None, "-", None))
    else:
        sources.append(found[0])
        targets += list_targets(found[1])
    lines = [
        "Each target of the performance issue beside the peer it is held against, from"
        " these reports of one run: " + ", ".join(f"`{p.name}`" for p in sources) + ".",
        " *ours* and *peer* are MB/s, bytes, ms or MB as the target names; *ratio* = ours / peer.",
        "",
        "| target | where | ours | peer | ratio | goal | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for t in sorted(targets, key=lambda t: t.target[:2]):  # by target, corpora in order
        met = "not measured" if t.met is None else ("yes" if t.met else "no")
        lines.append(
            f"| {t.target} | {t.where} | {_cell(t.ours)} | {_cell(t.peer)} |"
            f" {_cell(t.ratio, 2)} | {t.goal} | {met} |"
        )
    met = sum(t.met is True for t in targets)
    lines += ["", f"{met} of {len(targets)} met."]
    md = save_report(
        "targets",
        "Performance targets",
        lines,
        {"sources": [p.name for p in sources], "targets": [asdict(t) for t in targets]},
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
