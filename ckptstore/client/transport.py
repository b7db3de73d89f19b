"""HTTP to a ckptstore server: the key, retries with backoff, error answers as exceptions.

Connection errors and 5xx answers are retried with exponential backoff
(jittered); a 4xx answer never is: the request itself was wrong.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx

from ckptstore.errors import (
    AuthenticationFailed,
    RemoteConflict,
    RemoteError,
    RemoteNotFound,
    RemoteRejected,
    ServerUnavailable,
)

_BY_STATUS: dict[int, type[RemoteError]] = {
    401: AuthenticationFailed,
    404: RemoteNotFound,
    409: RemoteConflict,
}


class Transport:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        http: httpx.Client | None = None,
        attempts: int = 6,
        backoff_s: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))
        self._owns_http = http is None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """The successful answer; raises a RemoteError subclass for an error answer."""
        headers = {**self._headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        for attempt in range(self._attempts):
            last = attempt == self._attempts - 1
            try:
                response = self._http.request(method, self.url(path), headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise ServerUnavailable(0, "unreachable", f"{self.base_url}: {exc}") from None
                self._pause(attempt)
                continue
            if response.status_code >= 500 and not last:
                self._pause(attempt)
                continue
            if response.status_code >= 400:
                raise error_of(response)
            return response
        raise AssertionError("unreachable")

    def stream(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        """An open streaming response (the caller closes it); error answers raise."""
        request = self._http.build_request(method, self.url(path), headers=headers)
        response = self._http.send(request, stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise error_of(response)
        return response

    def _pause(self, attempt: int) -> None:
        delay = min(8.0, self._backoff_s * 2**attempt)
        self._sleep(delay * (0.5 + random.random() / 2))


def error_of(response: httpx.Response) -> RemoteError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200]
    status = response.status_code
    if status >= 500:
        return ServerUnavailable(status, code, message)
    cls = _BY_STATUS.get(status, RemoteRejected)
    return cls(status, code, message)
