"""A server of several processes reports one set of metrics: the requests of all its
processes, whichever one answers the scrape."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ckptstore import CheckpointStore
from ckptstore.server.auth import create_api_key
from ckptstore.testing.live_server import live_server

REQUESTS = 24


def _healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ckptstore_requests_total" and sample.labels == {
                "method": "GET",
                "route": "/healthz",
                "status": "200",
            }:
                return float(sample.value)
    return 0.0


def test_metrics_add_up_across_the_server_processes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with CheckpointStore.open(data_dir) as store:
        _, key = create_api_key(store.context.catalog, "ops", "", time.time(), admin=True)
    with live_server(data_dir, workers=2) as base:
        before = _healthz_count(
            httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}).text
        )
        for _ in range(REQUESTS):  # a new connection each: the processes share them
            assert httpx.get(f"{base}/healthz").status_code == 200
        seen = {
            _healthz_count(
                httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}).text
            )
            for _ in range(8)
        }
    assert seen == {before + REQUESTS}
