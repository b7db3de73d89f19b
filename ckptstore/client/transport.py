"""HTTP to a ckptstore server: the key, one retry policy, error answers as exceptions.

Every request, downloads included, runs under one ``RetryPolicy``: a connection
error, a 429 or a 5xx answer that names no store error is retried with
exponential, jittered backoff, a bounded number of times; any other 4xx never
is (the request itself was wrong), nor an error of the store (say, a corrupt
block), which a second try would only repeat.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar, Unpack

import httpx

from ckptstore.client.remote_errors import error_of
from ckptstore.errors import ServerUnavailable

T = TypeVar("T")


class Payload(TypedDict, total=False):
    """What a request carries besides its headers: httpx's arguments of these names."""

    json: Any  # a JSON-serialisable body
    content: bytes
    params: dict[str, Any]  # the query string


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with backoff; ``sleep`` is injected so tests never wait."""

    attempts: int = 6
    backoff_s: float = 0.25  # the first pause; doubled after each failure
    max_backoff_s: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = field(default=random.random)  # in [0, 1)

    def pause_s(self, failures: int) -> float:
        """The pause after the ``failures``-th failure in a row (from 1), jittered down
        by up to half so that clients failing together do not retry together."""
        delay = min(self.max_backoff_s, self.backoff_s * 2.0 ** (failures - 1))
        return delay * (0.5 + self.jitter() / 2)

    def call(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, tried again while it fails with a retryable error; the last
        error is raised (a connection error as ``ServerUnavailable``)."""
        for failures in range(1, self.attempts + 1):
            try:
                return attempt()
            except httpx.TransportError as exc:
                if failures == self.attempts:
                    raise ServerUnavailable(0, "unreachable", str(exc) or repr(exc)) from exc
            except ServerUnavailable:
                if failures == self.attempts:
                    raise
            self.sleep(self.pause_s(failures))
        raise AssertionError("attempts must be at least 1")


class Transport:
    """One server: its base URL and key, an httpx client, the retry policy."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))
        self._owns_http = http is None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retry = retry or RetryPolicy()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        **payload: Unpack[Payload],
    ) -> httpx.Response:
        """The successful answer, retried under the policy; an error answer raises the
        exception it describes (``remote_errors.error_of``)."""
        all_headers = {**self._headers, **(headers or {})}
        url = self.url(path)

        def once() -> httpx.Response:
            response = self._http.request(method, url, headers=all_headers, **payload)
            if response.status_code >= 400:
                raise error_of(response)
            return response

        return self.retry.call(once)

    def stream(
        self, method: str, path: str, headers: dict[str, str], **payload: Unpack[Payload]
    ) -> httpx.Response:
        """An open streaming response (the caller closes it); one attempt, for a caller
        that runs its whole transfer under ``retry.call``; an error answer raises."""
        request = self._http.build_request(
            method, self.url(path), headers={**self._headers, **headers}, **payload
        )
        response = self._http.send(request, stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise error_of(response)
        return response
