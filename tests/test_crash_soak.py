"""Longer crash runs (the ``soak`` marker; ``make soak``): the named kill points on
larger data, several kills in a row on one store, and kill points drawn at random.

The checks are test_crash.py's: every acknowledged checkpoint restores, nothing
deleted comes back, a GC past every grace period leaves the store clean.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.crash_child import CHECKPOINTS
from tests.test_crash import (
    KILL_POINTS,
    SETUPS,
    Before,
    check_recovery,
    parse,
    run_child,
)

pytestmark = pytest.mark.soak

DATA_MODES = ("ingest", "upload", "pending", "policy", "delete")  # data_for scales these
SCALED = [p for p in KILL_POINTS if p.mode in DATA_MODES]
REPEATED = [p for p in KILL_POINTS if p.mode in ("ingest", "upload", "pending")]
ROUNDS = 3
RANDOM_RUNS = 40


@pytest.mark.parametrize("point", SCALED, ids=[p.name for p in SCALED])
def test_sigkill_on_larger_data(tmp_path, point):
    store_dir = tmp_path / "store"
    before = SETUPS[point.setup](store_dir, 4)
    proc = run_child(store_dir, point, scale=4)
    assert proc.returncode == -9, proc.stderr
    check_recovery(store_dir, point, parse(proc.stdout), before, scale=4)


@pytest.mark.parametrize("point", REPEATED, ids=[p.name for p in REPEATED])
def test_sigkill_again_and_again_on_one_store(tmp_path, point):
    """Each round stores new epochs and dies one call later than the last; what every
    round before acknowledged must survive all the later kills."""
    store_dir = tmp_path / "store"
    before = Before()
    for round_ in range(ROUNDS):
        proc = run_child(store_dir, point, call=point.call + round_, first=round_ * CHECKPOINTS)
        assert proc.returncode == -9, proc.stderr
        kept = check_recovery(store_dir, point, parse(proc.stdout), before)
        before = Before(kept)


def test_sigkill_at_random_points(tmp_path):
    """Kill points drawn with a fixed seed: any of the named targets, another call
    number, before or after; a child that ends before its call comes is checked too."""
    rng = random.Random(17)
    killed = 0
    for run in range(RANDOM_RUNS):
        point = rng.choice(KILL_POINTS)
        point = replace(point, call=rng.randint(1, point.call + 2))
        point = replace(point, when=rng.choice(("before", "after")))
        scale = rng.choice((1, 2)) if point.mode in DATA_MODES else 1
        store_dir = tmp_path / f"store-{run}"
        before = SETUPS[point.setup](store_dir, scale)
        proc = run_child(store_dir, point, scale=scale)
        printed = parse(proc.stdout)
        assert proc.returncode in (-9, 0), (point, proc.stderr)
        assert printed.finished == (proc.returncode == 0), point
        killed += proc.returncode == -9
        check_recovery(store_dir, point, printed, before, scale)
    assert killed >= RANDOM_RUNS // 2  # most draws really cut an operation short
