"""A TCP proxy on loopback that counts the bytes going each way, for transfer benches.

The proxy listens before it knows where to forward (``forward_to``), so a server
can be started with the proxy's URL as its public URL (the signed download URLs
it hands out then go through the proxy too). It runs its own event loop on a
thread of the calling process.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

READ_BYTES = 256 * 1024


@dataclass(frozen=True)
class Traffic:
    """Bytes seen by the proxy: ``up`` from the client to the server, ``down`` back."""

    up: int
    down: int

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(self.up - other.up, self.down - other.down)


class ByteProxy:
    """Forwards every connection to ``127.0.0.1:<port>``, counting bytes each way."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._upstream_port: int | None = None
        self._up = 0
        self._down = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server, self.port = started.result(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forward_to(self, base_url: str) -> None:
        """Send the connections made from now on to the server at ``base_url``."""
        self._upstream_port = int(base_url.rsplit(":", 1)[1].strip("/"))

    def traffic(self) -> Traffic:
        """The bytes counted so far (subtract two readings for one transfer)."""
        return Traffic(self._up, self._down)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> ByteProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _listen(self) -> tuple[asyncio.Server, int]:
        server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        return server, port

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._upstream_port is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, upstream=True),
            self._pump(up_reader, writer, upstream=False),
        )

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while data := await src.read(READ_BYTES):
                if upstream:
                    self._up += len(data)
                else:
                    self._down += len(data)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
