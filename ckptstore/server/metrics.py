"""Prometheus text exposition of request counts, bytes moved and store totals."""

from __future__ import annotations

import threading
from collections import Counter

from ckptstore.store.checkpoints import StoreStats


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.bytes_uploaded = 0
        self.bytes_downloaded = 0

    def count_request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1

    def add_uploaded(self, n: int) -> None:
        with self._lock:
            self.bytes_uploaded += n

    def add_downloaded(self, n: int) -> None:
        with self._lock:
            self.bytes_downloaded += n

    def render(self, stats: StoreStats, gc_runs: int) -> str:
        lines = [
            "# HELP ckptstore_requests_total HTTP requests by method, route and status.",
            "# TYPE ckptstore_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(
                    f'ckptstore_requests_total{{method="{method}",route="{route}",'
                    f'status="{status}"}} {n}'
                )
            moved = [
                ("uploaded_bytes_total", self.bytes_uploaded, "Checkpoint bytes received."),
                ("downloaded_bytes_total", self.bytes_downloaded, "Checkpoint bytes sent."),
            ]
        for name, value, text in moved:
            lines += [
                f"# HELP ckptstore_{name} {text}",
                f"# TYPE ckptstore_{name} counter",
                f"ckptstore_{name} {value}",
            ]
        gauges = [
            ("checkpoints", stats.checkpoints, "Checkpoints stored."),
            ("logical_bytes", stats.logical_bytes, "Sum of checkpoint sizes."),
            ("stored_bytes", stats.stored_bytes, "Bytes of pack files."),
            ("blocks", stats.blocks, "Distinct blocks."),
            ("packs", stats.packs, "Pack files."),
            ("pending_rebases", stats.pending_rebases, "Checkpoints whose parent awaits rebasing."),
            ("gc_runs", gc_runs, "GC runs since start."),
        ]
        for name, value, text in gauges:
            lines += [
                f"# HELP ckptstore_{name} {text}",
                f"# TYPE ckptstore_{name} gauge",
                f"ckptstore_{name} {value}",
            ]
        return "\n".join(lines) + "\n"
