"""A light JSON client over one keep-alive HTTP/1.1 connection per thread.

The benchmark's client threads share the machine with the services, so the
client is `http.client` with no session machinery, to take as little CPU as
possible from the server being measured.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

TIMEOUT_SECONDS = 30.0
# A kept-alive connection that the server closed while idle fails on reuse.
STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
)


class RequestFailedError(RuntimeError):
    """A request got an unexpected status; the message contains the problem body."""


@dataclass(frozen=True)
class Reply:
    """A response: status, parsed JSON body (None when empty) and elapsed time."""

    status: int
    body: Any
    seconds: float


class JsonClient:
    """Sends JSON requests to one base URL; not thread-safe, use one per thread."""

    def __init__(self, base_url: str, tokens: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http:// base URLs are supported, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.tokens = dict(tokens)
        self._connection: http.client.HTTPConnection | None = None

    def get(self, path: str, role: str, **params: Any) -> Reply:
        """Send a GET as `role` with `params` as the query."""
        query = f"?{urlencode(params)}" if params else ""
        return self.request("GET", path + query, role)

    def post(self, path: str, role: str, body: Any) -> Reply:
        """Send a POST of `body` as JSON, as `role`."""
        return self.request("POST", path, role, body)

    def expect(self, reply: Reply, *statuses: int) -> Any:
        """Return the reply's body; raise RequestFailedError on another status."""
        if reply.status not in statuses:
            raise RequestFailedError(
                f"HTTP {reply.status} where {statuses} was expected: {reply.body}"
            )
        return reply.body

    def request(self, method: str, path: str, role: str, body: Any = None) -> Reply:
        """Send one request, reconnecting once if a kept-alive connection went stale."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        reused = self._connection is not None
        try:
            return self._send(method, path, payload, headers)
        except STALE_CONNECTION_ERRORS:
            self.close()
            if not reused:
                raise
            return self._send(method, path, payload, headers)

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _send(
        self, method: str, path: str, payload: bytes | None, headers: dict[str, str]
    ) -> Reply:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self.host, self.port, timeout=TIMEOUT_SECONDS
            )
        started = time.perf_counter()
        self._connection.request(method, path, body=payload, headers=headers)
        response = self._connection.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
        if response.will_close:
            self.close()
        return Reply(response.status, json.loads(raw) if raw else None, elapsed)
