"""A Python client for the AlphaPulse HTTP API: the original ``MarketDataRepository`` methods.

An existing backend switches to AlphaPulse by configuration: build the client with
:meth:`MarketDataClient.from_env` (``ALPHAPULSE_API_URL``, or the original ``RUST_API_URL``;
default ``http://localhost:3001``) and call the methods it already uses -- ``get_trades``,
``get_recent_trades``, ``get_ohlcv``, ``get_symbols``, ``get_summary`` -- plus ``health`` and
``get_book``.  :class:`AsyncMarketDataClient` offers the same methods as coroutines.

Trades come back as :class:`alphapulse.events.Trade` (prices and sizes as exact decimal text);
bars as :class:`OHLCVBar` with ``Decimal`` values.  Every failure raises
:class:`alphapulse.errors.ClientError`: ``status`` is the HTTP status (``None`` when the server
could not be reached or timed out), ``parameter`` names the rejected parameter when the server
said which, and the message carries the server's explanation.

Only the standard library is used (``urllib``), so importing this module pulls in nothing but
``alphapulse.errors`` and ``alphapulse.events``.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .errors import ClientError
from .events import Trade

DEFAULT_URL = "http://localhost:3001"
DEFAULT_TIMEOUT = 10.0
_MAX_RESPONSE_BYTES = 256 * 1024 * 1024     # 10,000 trades are ~3 MB; this only stops runaways

TimeArg = datetime | float | int | str | None


@dataclass(frozen=True, slots=True)
class OHLCVBar:
    """One bar.  ``start``/``end`` are ns since the epoch; ``timestamp`` is ``start`` in seconds."""

    timestamp: float
    start: int
    end: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int


def _time_param(value: TimeArg, name: str) -> str | None:
    """A ``start``/``end`` argument as the API's text: epoch seconds or ISO 8601."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected datetime, epoch seconds or ISO text, got a bool")
    if isinstance(value, (int, float)):
        return format(Decimal(value), "f") if isinstance(value, int) else repr(float(value))
    if isinstance(value, str):
        return value
    raise TypeError(f"{name}: expected datetime, epoch seconds or ISO text, got "
                    f"{type(value).__name__}")


def _trade(obj: dict[str, Any]) -> Trade:
    return Trade(obj["exchange"], obj["symbol"], obj.get("native_symbol", obj["symbol"]),
                 obj["price"], obj["size"], obj["side"], obj["trade_id"],
                 int(obj["ts_event"]), int(obj["ts_recv"]))


def _bar(obj: dict[str, Any]) -> OHLCVBar:
    return OHLCVBar(float(obj["timestamp"]), int(obj["start"]), int(obj["end"]),
                    Decimal(obj["open"]), Decimal(obj["high"]), Decimal(obj["low"]),
                    Decimal(obj["close"]), Decimal(obj["volume"]), int(obj["trades"]))


class MarketDataClient:
    """Blocking client.  One HTTP request per call; safe to share between threads.

    ``timeout`` (seconds) bounds connecting and each read; ``exchange`` is the default for
    methods that take one (``None``: the server's default, its first configured exchange).
    """

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 exchange: str | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s):// URL, got {base_url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.exchange = exchange

    @classmethod
    def from_env(cls, **kwargs: Any) -> MarketDataClient:
        """Configure from ``ALPHAPULSE_API_URL`` (or the original ``RUST_API_URL``) and
        ``ALPHAPULSE_API_TIMEOUT``."""
        url = os.environ.get("ALPHAPULSE_API_URL") or os.environ.get("RUST_API_URL") or DEFAULT_URL
        timeout = os.environ.get("ALPHAPULSE_API_TIMEOUT")
        if timeout is not None and "timeout" not in kwargs:
            kwargs["timeout"] = float(timeout)
        return cls(url, **kwargs)

    # --- transport --------------------------------------------------------------------------

    def _url(self, path: str, query: dict[str, Any]) -> str:
        pairs = {k: str(v) for k, v in query.items() if v is not None}
        qs = urllib.parse.urlencode(pairs)
        return f"{self.base_url}{path}" + (f"?{qs}" if qs else "")

    def _request(self, path: str, query: dict[str, Any] | None = None, *,
                 accept_status: tuple[int, ...] = ()) -> Any:
        url = self._url(path, query or {})
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, body = response.status, response.read(_MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                body = exc.read(_MAX_RESPONSE_BYTES + 1)
            finally:
                exc.close()
            if status not in accept_status:
                raise self._http_error(url, status, body) from None
        except (TimeoutError, socket.timeout) as exc:
            raise ClientError(f"GET {url}: timed out after {self.timeout:g} s") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise ClientError(f"GET {url}: timed out after {self.timeout:g} s") from exc
            raise ClientError(f"GET {url}: cannot reach the server ({reason})") from exc
        except (OSError, ValueError) as exc:      # reset mid-response, bad status line ...
            raise ClientError(f"GET {url}: {exc!r}") from exc
        if len(body) > _MAX_RESPONSE_BYTES:
            raise ClientError(f"GET {url}: response larger than {_MAX_RESPONSE_BYTES} bytes",
                              status)
        if path == "/metrics":
            return body.decode("utf-8", "replace")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ClientError(f"GET {url}: answer is not JSON ({exc})", status) from exc

    @staticmethod
    def _http_error(url: str, status: int, body: bytes) -> ClientError:
        parameter = None
        try:
            obj = json.loads(body)
            detail = obj.get("detail") or obj.get("error") or ""
            parameter = obj.get("parameter")
        except (ValueError, AttributeError):
            detail = body[:200].decode("utf-8", "replace")
        where = f" (parameter {parameter!r})" if parameter else ""
        error = ClientError(f"GET {url}: HTTP {status}{where}: {detail}", status)
        error.parameter = parameter  # type: ignore[attr-defined]
        return error

    def _exchange(self, exchange: str | None) -> str | None:
        return exchange if exchange is not None else self.exchange

    @staticmethod
    def _symbol(symbol: str) -> str:
        return urllib.parse.quote(symbol, safe="")

    # --- the repository interface -----------------------------------------------------------

    def get_trades(self, symbol: str, exchange: str | None = None, start_time: TimeArg = None,
                   end_time: TimeArg = None, limit: int | None = None) -> list[Trade]:
        """Trades with ``start_time <= ts_event < end_time``, oldest first.

        Without ``start_time``: the newest ``limit`` (server default 100); with it, the first
        ``limit`` from ``start_time`` on.
        """
        body = self._request(f"/trades/{self._symbol(symbol)}", {
            "exchange": self._exchange(exchange), "limit": limit,
            "start": _time_param(start_time, "start_time"),
            "end": _time_param(end_time, "end_time")})
        return [_trade(t) for t in body["data"]]

    def get_recent_trades(self, symbol: str, exchange: str | None = None,
                          limit: int = 100) -> list[Trade]:
        """The newest ``limit`` trades, newest first."""
        body = self._request(f"/trades/{self._symbol(symbol)}/recent",
                             {"exchange": self._exchange(exchange), "limit": limit})
        return [_trade(t) for t in body["data"]]

    def get_ohlcv(self, symbol: str, exchange: str | None = None, interval: str = "1m",
                  start_time: TimeArg = None, end_time: TimeArg = None,
                  limit: int | None = None) -> list[OHLCVBar]:
        """Bars oldest first (``interval`` one of 1m, 5m, 15m, 1h, 1d)."""
        body = self._request(f"/ohlcv/{self._symbol(symbol)}", {
            "exchange": self._exchange(exchange), "interval": interval, "limit": limit,
            "start": _time_param(start_time, "start_time"),
            "end": _time_param(end_time, "end_time")})
        return [_bar(b) for b in body["data"]]

    def get_symbols(self, exchange: str) -> list[str]:
        body = self._request(f"/symbols/{urllib.parse.quote(exchange, safe='')}")
        return list(body["symbols"])

    def get_summary(self) -> dict[str, Any]:
        return dict(self._request("/summary"))

    # --- beyond the original interface ------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The health report; an unhealthy server (503) returns its report, ``healthy`` false."""
        return dict(self._request("/health", accept_status=(503,)))

    def get_book(self, symbol: str, exchange: str | None = None,
                 depth: int | None = None) -> dict[str, Any]:
        """One exchange's book, or ``exchange="all"`` for the consolidated view."""
        return dict(self._request(f"/book/{self._symbol(symbol)}",
                                  {"exchange": self._exchange(exchange), "depth": depth}))

    def get_arbitrage(self, symbol: str, limit: int | None = None,
                      min_bps: float | None = None) -> list[dict[str, Any]]:
        body = self._request(f"/arbitrage/{self._symbol(symbol)}",
                             {"limit": limit, "min_bps": min_bps})
        return list(body["data"])

    def get_metrics(self) -> str:
        """The Prometheus exposition text."""
        return str(self._request("/metrics"))


class AsyncMarketDataClient:
    """The same methods as coroutines (each request runs in a worker thread)."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 exchange: str | None = None) -> None:
        self.sync = MarketDataClient(base_url, timeout=timeout, exchange=exchange)

    @classmethod
    def from_env(cls, **kwargs: Any) -> AsyncMarketDataClient:
        self = cls.__new__(cls)
        self.sync = MarketDataClient.from_env(**kwargs)
        return self

    async def get_trades(self, *args: Any, **kwargs: Any) -> list[Trade]:
        return await asyncio.to_thread(self.sync.get_trades, *args, **kwargs)

    async def get_recent_trades(self, *args: Any, **kwargs: Any) -> list[Trade]:
        return await asyncio.to_thread(self.sync.get_recent_trades, *args, **kwargs)

    async def get_ohlcv(self, *args: Any, **kwargs: Any) -> list[OHLCVBar]:
        return await asyncio.to_thread(self.sync.get_ohlcv, *args, **kwargs)

    async def get_symbols(self, exchange: str) -> list[str]:
        return await asyncio.to_thread(self.sync.get_symbols, exchange)

    async def get_summary(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.get_summary)

    async def health(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.health)

    async def get_book(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.get_book, *args, **kwargs)


#: The original backend's name for the interface (its repository was called this way).
MarketDataRepository = MarketDataClient
