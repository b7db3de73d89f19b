"""The web interface's SVG charts: which metrics, which x axis, which points."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ckptstore.server.ui.plot import MAX_CHARTS, charts, growth, line_chart
from ckptstore.store.catalog.base import CheckpointRecord


def _record(i: int, metrics: dict[str, float], **fields: object) -> CheckpointRecord:
    values: dict[str, object] = {
        "checkpoint_id": f"ckpt_{i:016x}",
        "job_id": "job",
        "type": "automatic",
        "name": f"c{i}",
        "description": None,
        "epoch": i,
        "step": 10 * i,
        "metrics": metrics,
        "status": "ready",
        "size_bytes": 1_000_000,
        "stored_bytes": 250_000,
        "created_at": 1_700_000_000.0 + 3600 * i,
    }
    return CheckpointRecord(**(values | fields))


def _points(svg: str) -> list[tuple[float, float]]:
    line = re.search(r'<polyline points="([^"]+)"', svg)
    assert line is not None
    return [tuple(map(float, p.split(","))) for p in line.group(1).split()]


def test_charts_one_per_metric_losses_first_and_well_formed() -> None:
    records = [
        _record(i, {"validationAccuracy": 0.5 + i / 10, "loss": 1 / (i + 1)}) for i in range(4)
    ]
    made = charts(records)
    assert [c.metric for c in made] == ["loss", "validationAccuracy"]
    for chart in made:
        ET.fromstring(chart.svg)  # parses as XML
        assert chart.x_label == "step"
    # loss falls: each point lower on the page (a larger y) than the one before
    ys = [y for _, y in _points(made[0].svg)]
    assert ys == sorted(ys) and len(ys) == 4


def test_charts_leave_out_best_copies_and_pending_and_fall_back_to_epoch() -> None:
    records = [
        _record(0, {"loss": 1.0}, step=None),
        _record(1, {"loss": 0.5}, step=None),
        _record(2, {"loss": 0.5}, type="best", step=None),
        _record(3, {}, status="pending", step=None),
    ]
    (chart,) = charts(records)
    assert chart.x_label == "epoch" and len(_points(chart.svg)) == 2


def test_charts_without_step_or_epoch_use_the_order_and_cap_the_count() -> None:
    metrics = {f"m{k}": float(k) for k in range(MAX_CHARTS + 3)}
    made = charts([_record(i, metrics, epoch=None, step=None) for i in range(3)])
    assert len(made) == MAX_CHARTS and {c.x_label for c in made} == {"checkpoint"}


def test_line_chart_of_one_point_or_a_flat_line_stays_inside_the_box() -> None:
    for series in ([(5.0, 1.0)], [(0.0, 2.0), (1.0, 2.0)]):
        svg = line_chart("flat", "step", series)
        ET.fromstring(svg)
        for x, y in _points(svg):
            assert 0 <= x <= 360 and 0 <= y <= 180


def test_growth_adds_up_logical_and_stored_bytes_over_hours() -> None:
    records = [_record(i, {}) for i in range(3)] + [_record(9, {}, status="pending")]
    logical, stored = growth(records)
    assert (logical.metric, stored.metric) == ("logical MB", "stored MB")
    assert "from 1 to 3" in logical.svg and "from 0.25 to 0.75" in stored.svg
    assert growth(records[:1]) == []
