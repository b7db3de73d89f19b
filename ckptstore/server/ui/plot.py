"""Line charts of a job's metrics, drawn on the server as SVG (no script, no library).

One small chart per metric, since losses and accuracies live on different
scales; the x axis is the step when every point has one, else the epoch, else
the order in which the checkpoints were made.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ckptstore.store.catalog.base import CheckpointRecord

WIDTH, HEIGHT = 360, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 24, 36
MAX_CHARTS = 8


@dataclass(frozen=True)
class Chart:
    metric: str
    x_label: str
    svg: str


def charts(records: list[CheckpointRecord]) -> list[Chart]:
    """A chart per metric of ``records`` (oldest first); best copies and pending
    checkpoints are left out, as they would repeat or lack a point."""
    points = [r for r in records if r.type != "best" and r.status == "ready"]
    x_label, xs = _x_axis(points)
    metrics = sorted({key for r in points for key in r.metrics}, key=_metric_order)
    out = []
    for metric in metrics[:MAX_CHARTS]:
        pairs = zip(xs, points, strict=True)
        series = [(x, r.metrics[metric]) for x, r in pairs if metric in r.metrics]
        if series:
            out.append(Chart(metric, x_label, line_chart(metric, x_label, series)))
    return out


def _metric_order(metric: str) -> tuple[int, str]:
    """Losses first, then validation metrics, then the rest."""
    lowered = metric.lower()
    return (0 if "loss" in lowered else 1 if lowered.startswith("val") else 2, metric)


def _x_axis(points: list[CheckpointRecord]) -> tuple[str, list[float]]:
    if points and all(r.step is not None for r in points):
        return "step", [float(r.step or 0) for r in points]
    if points and all(r.epoch is not None for r in points):
        return "epoch", [float(r.epoch or 0) for r in points]
    return "checkpoint", [float(i + 1) for i in range(len(points))]


def _scale(lo: float, hi: float, size: float, flip: bool) -> tuple[float, float]:
    """Factor and offset mapping [lo, hi] onto [0, size] (flipped for the y axis)."""
    span = hi - lo or 1.0
    factor = size / span
    return (-factor, size + lo * factor) if flip else (factor, -lo * factor)


def growth(records: list[CheckpointRecord]) -> list[Chart]:
    """Charts of a tenant's logical and stored bytes as its kept checkpoints were made,
    in megabytes by hours since the first (checkpoints since deleted are not counted)."""
    ready = sorted((r for r in records if r.status == "ready"), key=lambda r: r.created_at)
    if len(ready) < 2:
        return []
    start = ready[0].created_at
    hours = [(r.created_at - start) / 3600 for r in ready]
    out = []
    for name, sizes in (
        ("logical MB", [r.size_bytes for r in ready]),
        ("stored MB", [r.stored_bytes for r in ready]),
    ):
        total, series = 0, []
        for x, size in zip(hours, sizes, strict=True):
            total += size
            series.append((x, total / 1e6))
        out.append(Chart(name, "hours", line_chart(name, "hours", series)))
    return out


def line_chart(metric: str, x_label: str, series: list[tuple[float, float]]) -> str:
    """An SVG line chart of ``series`` (x, y), titled ``metric``."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xs, ys = [x for x, _ in series], [y for _, y in series]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    if y_lo == y_hi:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    fx, ox = _scale(x_lo, x_hi, plot_w, flip=False)
    fy, oy = _scale(y_lo, y_hi, plot_h, flip=True)

    def at(x: float, y: float) -> tuple[float, float]:
        return LEFT + (x * fx + ox if x_hi > x_lo else plot_w / 2), TOP + y * fy + oy

    coords = [at(x, y) for x, y in series]
    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
    dots = "".join(
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3"><title>{escape(x_label)} {x:g}: '
        f"{y:.6g}</title></circle>"
        for (px, py), (x, y) in zip(coords, series, strict=True)
    )
    name = escape(metric)
    bottom = TOP + plot_h
    ticks = "".join(
        f'<text x="{LEFT - 6}" y="{TOP + plot_h * (1 - f) + 4:.1f}" text-anchor="end">'
        f"{y_lo + (y_hi - y_lo) * f:.4g}</text>"
        for f in (0.0, 0.5, 1.0)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{name} by {escape(x_label)}, {len(series)} points, '
        f'from {ys[0]:.4g} to {ys[-1]:.4g}">'
        f'<text x="{LEFT}" y="16" class="chart-title">{name}</text>'
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" class="axis"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="axis"/>'
        f"{ticks}"
        f'<text x="{LEFT}" y="{bottom + 16}">{x_lo:g}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{bottom + 16}" text-anchor="end">{x_hi:g}</text>'
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<polyline points="{line}" class="series"/>{dots}</svg>'
    )
