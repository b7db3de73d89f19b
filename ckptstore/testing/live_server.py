"""A real ``ckptstore serve`` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def live_server(
    data_dir: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    timeout_s: float = 30,
    log_level: str = "warning",
) -> Iterator[str]:
    """Run the server on ``data_dir``; yields its base URL; its output goes to server.log."""
    port = free_port()
    log_path = data_dir.parent / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "ckptstore"),
        "serve",
        "--data",
        str(data_dir),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        log_level,
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, proc, timeout_s, log_path)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _wait_healthy(
    base: str, proc: subprocess.Popen[bytes], timeout_s: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
