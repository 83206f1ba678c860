"""``build_app(state)``: the Starlette application serving the HTTP API and ``/ws``.

The app holds no module-level state: everything it serves comes from the ``state`` object it is
built with (the runtime's, or a test's), which must satisfy :class:`ServerState`.  Build as many
apps as you like in one process.

Outside the routes, two pure-ASGI layers:

* :class:`RequestGuard` answers oversized or malformed requests before routing: a URL longer
  than ``max_url_bytes`` -> 414, a body announced larger than ``max_body_bytes`` -> 413, a bad
  ``Content-Length`` -> 400 (the API is GET-only; no body is ever read);
* :class:`HttpMetrics` counts every request and its duration under the *route template*
  (``/trades/{symbol}``) and a bounded method label, so a scan of random URLs cannot blow up
  the label space.

Every error, including 404 for an unknown path and 405 for a wrong method, is a JSON body
``{"error", "detail", "status"[, "parameter"]}``.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from . import http, openapi

if TYPE_CHECKING:
    from .._book import OrderBook
    from .metrics import Metrics
    from .store import TradeStore

log = logging.getLogger(__name__)

MAX_URL_BYTES = 8192
MAX_BODY_BYTES = 64 * 1024
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class ConsolidatedView(Protocol):
    """The cross-exchange book (``alphapulse.consolidated.ConsolidatedBook`` fits)."""

    def bbo(self) -> Mapping[str, Any]: ...
    def depth(self, n: int) -> Mapping[str, Any]: ...


class ArbitrageView(Protocol):
    """Recent opportunities (``alphapulse.arbitrage.ArbitrageDetector`` fits)."""

    def recent(self, symbol: str, limit: int, min_bps: float | None) -> Sequence[Any]: ...


class ServerState(Protocol):
    """What the app needs from the running server.

    ``store``/``metrics``: the :class:`~.store.TradeStore` and :class:`~.metrics.Metrics`.
    ``exchanges``/``symbols``: what is configured (the API also serves pairs seen in the store).
    ``books(exchange)``: that exchange's live books by normalised symbol (empty if none).
    ``consolidated(symbol)``: the cross-exchange view, ``None`` if not (yet) available.
    ``arbitrage``: the detector, ``None`` when disabled.
    ``health()``: a JSON-able dict with at least ``"healthy": bool`` (collectors' connection
    state and last message age, Redis state ...); ``/health`` answers 503 when it is false.
    ``ws_endpoint``: the ``/ws`` WebSocket endpoint (``async def f(websocket)``), or ``None``.
    ``start()``/``stop()``: awaited by the app's lifespan (start collectors, flush and close).
    """

    store: TradeStore
    metrics: Metrics
    exchanges: Sequence[str]
    symbols: Sequence[str]
    arbitrage: ArbitrageView | None
    ws_endpoint: Callable[[WebSocket], Awaitable[None]] | None

    def books(self, exchange: str) -> Mapping[str, OrderBook]: ...
    def consolidated(self, symbol: str) -> ConsolidatedView | None: ...
    def health(self) -> Mapping[str, Any]: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _json_error(status: int, error: str, detail: str,
                headers: Mapping[str, str] | None = None) -> Response:
    return http.JSONResponse({"error": error, "detail": detail, "status": status},
                             status_code=status, headers=dict(headers or {}))


class RequestGuard:
    """Reject oversized/malformed requests before they reach the router."""

    def __init__(self, app: ASGIApp, *, max_url_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = self._check(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> Response | None:
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(
            scope.get("query_string", b""))
        if url_bytes > self.max_url_bytes:
            return _json_error(414, "uri_too_long",
                               f"request target is {url_bytes} bytes; the limit is "
                               f"{self.max_url_bytes}")
        lengths = [v for k, v in scope.get("headers", ()) if k == b"content-length"]
        if lengths:
            raw = lengths[0].strip()
            if len(lengths) > 1 or not raw.isdigit():
                return _json_error(400, "bad_request", "malformed Content-Length header")
            if int(raw) > self.max_body_bytes:
                return _json_error(413, "payload_too_large",
                                   f"request body of {int(raw)} bytes exceeds the limit of "
                                   f"{self.max_body_bytes}")
        return None


class HttpMetrics:
    """Count requests and time them, labelled by method, route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_duration.labels(method, template).observe(
                time.perf_counter() - started)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        detail = f"no such endpoint: {request.url.path} (see /openapi.json)"
        return _json_error(404, "not_found", detail)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "GET, HEAD")
        return _json_error(405, "method_not_allowed",
                           f"{request.method} is not allowed here; allowed: {allowed}",
                           exc.headers)
    return _json_error(exc.status_code, "http_error", str(exc.detail), exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error serving %s %s", request.method, request.url.path,
                  exc_info=exc)
    return _json_error(500, "internal_error", "the server failed to answer this request")


def _openapi_endpoint(request: Request) -> Response:
    http.parse_query(request, "/openapi.json")
    state: ServerState = request.app.state.server
    return http.JSONResponse(openapi.document(state.exchanges, state.symbols))


def build_app(state: ServerState, *, max_url_bytes: int = MAX_URL_BYTES,
              max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The ASGI app over ``state``; its lifespan awaits ``state.start()`` and ``state.stop()``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    routes: list[BaseRoute] = [
        Route(path, endpoint, methods=["GET"], name=path)
        for path, endpoint in http.ENDPOINTS.items()
    ]
    routes.append(Route("/openapi.json", http.guarded(_openapi_endpoint), methods=["GET"],
                        name="/openapi.json"))
    if state.ws_endpoint is not None:
        routes.append(WebSocketRoute("/ws", state.ws_endpoint, name="/ws"))

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception, Exception: _internal_error},
    )
    app.state.server = state
    # add_middleware prepends: the last added is outermost, so metrics see guard rejections.
    app.add_middleware(RequestGuard, max_url_bytes=max_url_bytes, max_body_bytes=max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=state.metrics)
    return app
