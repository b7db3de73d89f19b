"""Another revision's code against the working tree on the corpora, runs interleaved.

    python -m bench.ab REV [--corpora pretrain bf16] [--runs 3] [--scale small]

This VM's speed drifts by up to 2x from one minute to the next, so two reports
made at different times cannot show a 10% change. This checks REV (any git
revision) out into a worktree under bench/work/, builds its C loops there, and
runs ``bench.corpus_child`` ingest, then restore, for REV and for the working
tree in turn (REV first in odd runs, second in even ones), each in a fresh
process started in its own tree (``python -m`` puts the working directory
ahead of PYTHONPATH and of the editable install). It prints and reports the median
of each figure over the runs and every run's value, in
bench/results/<date>-<host>-ab-<rev>.{md,json} (rev: the first 7 hex digits).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import MB, WORK, save_report
from bench.corpus import write

CORPORA = ("pretrain", "finetune-frozen", "lora", "bf16", "opaque")
ROOT = Path(__file__).resolve().parent.parent
FIGURES = {  # label: how it comes out of corpus_child's ingest and restore output
    "stored MB": lambda i, r: i["stored_bytes"] / MB,
    "put MB/s": lambda i, r: i["logical_bytes"] / MB / i["put_seconds"],
    "ingest, with rebases MB/s": lambda i, r: i["logical_bytes"] / MB / i["seconds"],
    "restore newest MB/s": lambda i, r: r["last_bytes"] / MB / r["last_seconds"],
    "restore deepest MB/s": lambda i, r: r["deepest_bytes"] / MB / r["deepest_seconds"],
}


def checkout(rev: str) -> tuple[str, Path]:
    """REV's commit and a worktree of it with its C loops built (made once per commit)."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = (WORK / f"ab-{commit[:12]}").resolve()
    if not (tree / ".built").exists():
        shutil.rmtree(tree, ignore_errors=True)
        _git("worktree", "prune")
        _git("worktree", "add", "--detach", "--force", str(tree), commit)
        setup = "import setuptools; setuptools.setup()"
        sources = ("store/_kernels.c", "store/codecs/_kernels.c")  # before and after the layout
        if any((tree / "ckptstore" / source).exists() for source in sources):
            subprocess.run(
                [sys.executable, "-c", setup, "build_ext", "--inplace", "-q"],
                cwd=tree,
                check=True,
                capture_output=True,
            )
            shutil.rmtree(tree / "build", ignore_errors=True)
        (tree / ".built").write_text(commit + "\n")
    return commit, tree


def run_side(code: Path, files: list[Path], store: Path) -> dict[str, float]:
    """One ingest and one restore of ``files`` with the code in ``code``; the figures."""
    shutil.rmtree(store, ignore_errors=True)
    ingest = _child(code, "ingest", str(store), *map(str, files))
    restore = _child(code, "restore", str(store))
    shutil.rmtree(store, ignore_errors=True)
    return {label: figure(ingest, restore) for label, figure in FIGURES.items()}


def compare(rev_tree: Path, files: list[Path], runs: int) -> dict[str, dict[str, list[float]]]:
    """Every run's figures for REV ("old") and the working tree ("new")."""
    store = (WORK / "ab-store").resolve()
    found: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for run in range(runs):
        sides = [("old", rev_tree), ("new", ROOT)]
        for side, code in sides if run % 2 == 0 else sides[::-1]:
            for label, value in run_side(code, files, store).items():
                found[side].setdefault(label, []).append(value)
    return found


def report_lines(rev: str, commit: str, rows: dict, runs: int) -> list[str]:
    lines = [
        f"`{rev}` ({commit[:12]}) against the working tree, {runs} runs each, interleaved;"
        " medians, then every run (MB/s are 10^6 bytes per second).",
        "",
        "| corpus | figure | old | new | new / old | old runs | new runs |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for corpus, found in rows.items():
        for label in FIGURES:
            old, new = found["old"][label], found["new"][label]
            a, b = statistics.median(old), statistics.median(new)
            lines.append(
                f"| {corpus} | {label} | {a:,.1f} | {b:,.1f} | {b / a:.3f} | "
                f"{' / '.join(f'{v:,.0f}' for v in old)} | {' / '.join(f'{v:,.0f}' for v in new)} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rev", help="the git revision to compare the working tree with")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=["pretrain", "bf16"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", choices=("small", "medium", "large"), default="small")
    parser.add_argument("--checkpoints", type=int, default=6)
    args = parser.parse_args()
    commit, tree = checkout(args.rev)
    rows = {}
    for corpus in args.corpora:
        print(f"{corpus} ...", flush=True)
        files = [
            path.resolve()
            for path in write(corpus, WORK / f"corpus-{args.scale}", args.scale, args.checkpoints)
        ]
        rows[corpus] = compare(tree, files, args.runs)
    lines = report_lines(args.rev, commit, rows, args.runs)
    md = save_report(
        f"ab-{commit[:7]}", "Old code against new, interleaved", lines, {"rev": commit, **rows}
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


def _child(code: Path, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.corpus_child", *args],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return out.stdout.strip()


if __name__ == "__main__":
    main()
