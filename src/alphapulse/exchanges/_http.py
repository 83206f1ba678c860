"""A small asyncio HTTP/1.1 GET client and a request-weight limiter, for REST snapshots.

Why not a library: the only REST call a collector makes is one GET for a depth snapshot now
and then.  ``httpx``/``aiohttp`` would be a new runtime dependency for that; ``urllib`` in a
thread cannot be cancelled when the collector stops and ties up a pool thread per request.
asyncio streams are cancellable, time out with ``asyncio.timeout``, speak TLS through the
stdlib ``ssl`` module, and the protocol needed here is tiny (``Connection: close``, the body
by ``Content-Length``, chunked, or read to EOF).
"""
from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["HttpResponse", "WeightLimiter", "http_get"]

_MAX_HEADER = 64 << 10


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)   # lower-case names
    body: bytes = b""


async def http_get(url: str, *, timeout: float = 10.0, max_body: int = 32 << 20,
                   headers: dict[str, str] | None = None) -> HttpResponse:
    """GET ``url`` (http or https) and return status, headers and the whole body.

    Raises OSError / TimeoutError / ValueError for transport or framing trouble.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Accept: application/json",
             "Accept-Encoding: identity", "Connection: close", "User-Agent: alphapulse"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=ssl.create_default_context() if tls else None,
            limit=_MAX_HEADER)
        try:
            writer.write(request)
            await writer.drain()
            return await _read_response(reader, max_body)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


async def _read_response(reader: asyncio.StreamReader, max_body: int) -> HttpResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    proto, _, rest = status_line.partition(" ")
    if not proto.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {status_line[:80]!r}")
    status = int(rest.split(" ", 1)[0])
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                break
            total += size
            if total > max_body:
                raise ValueError(f"response body larger than {max_body} bytes")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > max_body:
            raise ValueError(f"response body larger than {max_body} bytes")
        body = await reader.readexactly(length)
    else:
        body = await reader.read(max_body + 1)
        if len(body) > max_body:
            raise ValueError(f"response body larger than {max_body} bytes")
    return HttpResponse(status, headers, body)


class WeightLimiter:
    """Request-weight budget per rolling minute, plus the server's own back-off orders.

    Binance counts ``REQUEST_WEIGHT`` per IP per minute (1200) and reports the used weight in
    ``X-MBX-USED-WEIGHT-1M``; we spend at most ``budget`` of it, trust the server's figure when
    it is higher than ours (other processes on the same IP), and obey ``Retry-After`` on 429 /
    418 (418 = already banned for ignoring 429s: wait long).
    """

    def __init__(self, budget: int = 600, *, window: float = 60.0,
                 ban_backoff: float = 300.0) -> None:
        self.budget, self.window, self.ban_backoff = budget, window, ban_backoff
        self._spent: list[tuple[float, int]] = []       # (monotonic time, weight)
        self._server_used = 0
        self._server_used_at = 0.0
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def used(self, now: float) -> int:
        self._spent = [(t, w) for t, w in self._spent if now - t < self.window]
        ours = sum(w for _, w in self._spent)
        theirs = self._server_used if now - self._server_used_at < self.window else 0
        return max(ours, theirs)

    def delay(self, weight: int, now: float | None = None) -> float:
        """Seconds to wait before spending ``weight`` (0 = go now)."""
        now = time.monotonic() if now is None else now
        if now < self._blocked_until:
            return self._blocked_until - now
        if self.used(now) + weight <= self.budget or not self._spent:
            return 0.0
        return max(0.0, self._spent[0][0] + self.window - now)

    async def acquire(self, weight: int) -> None:
        async with self._lock:
            while (wait := self.delay(weight)) > 0:
                await asyncio.sleep(wait)
            self._spent.append((time.monotonic(), weight))

    def observe(self, response: HttpResponse) -> None:
        """Learn from a response: used weight, and 429/418 ``Retry-After``."""
        now = time.monotonic()
        used = response.headers.get("x-mbx-used-weight-1m")
        if used is not None and used.isdigit():
            self._server_used, self._server_used_at = int(used), now
        if response.status in (429, 418):
            retry = response.headers.get("retry-after", "")
            seconds = float(retry) if retry.replace(".", "", 1).isdigit() else None
            if response.status == 418:
                seconds = max(seconds or 0.0, self.ban_backoff)
            elif seconds is None:
                seconds = self.window
            self._blocked_until = max(self._blocked_until, now + seconds)

    @property
    def blocked_for(self) -> float:
        return max(0.0, self._blocked_until - time.monotonic())
