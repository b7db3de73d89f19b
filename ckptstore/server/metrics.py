"""Prometheus metrics through prometheus_client: requests by route and status, their
latency, bytes moved, GC runs, and the store's totals (read when scraped)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ckptstore.store.checkpoints import StoreStats

# prometheus_client's own variable: where the processes of one server share their values
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Latency buckets from a list request to a multi-GB streamed upload.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """One app's metrics, in a registry of its own (several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "ckptstore_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "ckptstore_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route.",
            ["method", "route"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self._uploaded = Counter(
            "ckptstore_uploaded_bytes", "Checkpoint bytes received.", registry=self.registry
        )
        self._downloaded = Counter(
            "ckptstore_downloaded_bytes", "Checkpoint bytes sent.", registry=self.registry
        )
        self._store_collector: _StoreCollector | None = None
        # the counter and histogram of each method, route and status, found once:
        # labels() checks and locks on every call (this holds one entry per child
        # that prometheus_client holds anyway)
        self._by_request: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def count_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        found = self._by_request.get(key)
        if found is None:
            found = self._by_request[key] = (
                self._requests.labels(method, route, str(status)),
                self._latency.labels(method, route),
            )
        found[0].inc()
        found[1].observe(seconds)

    def add_uploaded(self, n: int) -> None:
        self._uploaded.inc(n)

    def add_downloaded(self, n: int) -> None:
        self._downloaded.inc(n)

    def watch_store(self, stats: Callable[[], StoreStats], gc_runs: Callable[[], int]) -> None:
        """Report the store's totals and the GC runs, read at each scrape."""
        self._store_collector = _StoreCollector(stats, gc_runs)
        self.registry.register(self._store_collector)

    def render(self) -> bytes:
        """The text exposition of every metric (reads the store's totals: not on the
        event loop). Under several server processes (``PROMETHEUS_MULTIPROC_DIR`` set by
        ``serve --workers``) the counters and histograms are those of all processes
        together, whichever one answers."""
        shared = os.environ.get(MULTIPROCESS_VARIABLE)
        if not shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        # the library leaves this constructor unannotated
        multiprocess.MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        if self._store_collector is not None:
            registry.register(self._store_collector)
        return generate_latest(registry)


class _StoreCollector(Collector):
    def __init__(self, stats: Callable[[], StoreStats], gc_runs: Callable[[], int]) -> None:
        self._stats = stats
        self._gc_runs = gc_runs

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        gauges = [
            ("checkpoints", stats.checkpoints, "Checkpoints stored."),
            ("logical_bytes", stats.logical_bytes, "Sum of checkpoint sizes."),
            ("stored_bytes", stats.stored_bytes, "Bytes of pack files."),
            ("blocks", stats.blocks, "Distinct blocks."),
            ("packs", stats.packs, "Pack files."),
            ("pending_rebases", stats.pending_rebases, "Checkpoints whose parent awaits rebasing."),
        ]
        for name, value, text in gauges:
            yield GaugeMetricFamily(f"ckptstore_{name}", text, value=value)
        yield CounterMetricFamily(
            "ckptstore_gc_runs", "GC runs since start.", value=self._gc_runs()
        )
