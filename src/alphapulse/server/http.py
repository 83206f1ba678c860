"""The HTTP endpoint functions.

Each endpoint reads the server state from ``request.app.state.server`` (set by
:func:`alphapulse.server.app.build_app`; there is no module-level state), parses its parameters
with :mod:`.params` (whose errors become 4xx JSON bodies) and answers JSON via orjson.  Prices
and sizes are decimal strings exactly as the books and exchanges hold them.

Responses keep the original service's envelope where it had one: ``{"data": [...], "symbol",
"exchange", "count", "processing_time_ms"}``.

:data:`QUERY_PARAMETERS` is the single list of what each route accepts; the OpenAPI document and
its test are checked against it.
"""
from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from alphapulse import __version__

from . import params
from .params import ParamError
from .store import TradeSlice

if TYPE_CHECKING:
    from .app import ServerState

_TIME = ("start", "end", "start_time", "end_time")

#: Route template -> the query parameters it accepts (anything else is a 400).
QUERY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "/health": (),
    "/metrics": (),
    "/openapi.json": (),
    "/summary": (),
    "/symbols/{exchange}": (),
    "/trades/{symbol}": ("exchange", "limit", *_TIME),
    "/trades/{symbol}/recent": ("exchange", "limit"),
    "/ohlcv/{symbol}": ("exchange", "interval", "limit", *_TIME),
    "/book/{symbol}": ("exchange", "depth"),
    "/arbitrage/{symbol}": ("limit", "min_bps"),
}


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    to_dict = getattr(obj, "to_dict", None) or getattr(obj, "to_json", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class JSONResponse(Response):
    """orjson-encoded JSON (dataclasses natively; Decimal as text; objects via ``to_dict()``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return self.encode(content)

    @staticmethod
    def encode(content: Any) -> bytes:
        return orjson.dumps(content, default=_default,
                            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def error_response(exc: ParamError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


def _server(request: Request) -> ServerState:
    return request.app.state.server  # type: ignore[no-any-return]


def parse_query(request: Request, route: str) -> dict[str, str]:
    return params.check_names(request.query_params.multi_items(), QUERY_PARAMETERS[route])


def _exchanges(state: ServerState) -> list[str]:
    return sorted(set(state.exchanges) | {ex for ex, _ in state.store.keys()})


def _symbols(state: ServerState, exchange: str | None = None) -> set[str]:
    known = set(state.symbols)
    known.update(sym for ex, sym in state.store.keys() if exchange in (None, ex))
    return known


def _default_exchange(state: ServerState) -> str | None:
    # The original API defaulted to coinbase; we default to the first configured exchange.
    configured = list(state.exchanges)
    return configured[0] if configured else None


def _pair(request: Request, query: Mapping[str, str], *, allow_all: bool = False
          ) -> tuple[str, str]:
    state = _server(request)
    exchange = params.exchange(query.get("exchange"), _exchanges(state),
                               default=_default_exchange(state), allow_all=allow_all)
    symbol = params.symbol(request.path_params["symbol"],
                           _symbols(state, None if exchange == "all" else exchange))
    return exchange, symbol


def _envelope(started: float, data: list[Any], **fields: Any) -> dict[str, Any]:
    return {**fields, "count": len(data), "data": data,
            "processing_time_ms": round((time.perf_counter() - started) * 1000, 3)}


def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """Wrap a handler (plain or async): ParamError -> 4xx JSON.

    Plain handlers run inline on the event loop: each does bounded in-memory work, cheaper than
    a thread hop; the big trade answers hand their decoding to a thread themselves.
    """
    is_async = inspect.iscoroutinefunction(handler)

    async def endpoint(request: Request) -> Response:
        try:
            if is_async:
                return await handler(request)  # type: ignore[no-any-return]
            return handler(request)  # type: ignore[no-any-return]
        except ParamError as exc:
            return error_response(exc)
    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


# --- endpoints ---------------------------------------------------------------------------------

def health(request: Request) -> Response:
    """Collectors, store and Redis state; 503 when the service is not healthy.

    200 with status "ok" or "degraded" (a Redis writer down: the local data path still serves),
    503 with status "unhealthy" (a collector down or silent, or ``--source redis`` with Redis
    down: no data).  The rules are in :func:`alphapulse.server.health.report`."""
    parse_query(request, "/health")
    state = _server(request)
    try:
        report = dict(state.health())
    except Exception as exc:       # a broken health probe is itself unhealthy, not a 500
        report = {"healthy": False, "error": f"health check failed: {exc!r}"}
    healthy = bool(report.get("healthy", False))
    report.setdefault("store", {
        "pairs": len(state.store.keys()),
        "trades_stored": sum(n for _, _, n, _ in state.store.sizes()),
        "capacity_per_pair": state.store.capacity,
    })
    body = {"status": "ok" if healthy else "unhealthy", **report, "healthy": healthy,
            "version": __version__}
    return JSONResponse(body, status_code=200 if healthy else 503)


def metrics(request: Request) -> Response:
    """Prometheus exposition text."""
    parse_query(request, "/metrics")
    body, content_type = _server(request).metrics.render()
    return Response(body, media_type=content_type)


def summary(request: Request) -> Response:
    """Counts, symbols, first/last times and rates, overall and per exchange/symbol."""
    started = time.perf_counter()
    parse_query(request, "/summary")
    state = _server(request)
    body = state.store.summary()
    body["exchanges"] = list(state.exchanges)
    body["symbols"] = list(state.symbols)
    body["total_orderbooks"] = sum(len(state.books(ex)) for ex in state.exchanges)
    body["processing_time_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return JSONResponse(body)


def symbols(request: Request) -> Response:
    """Symbols served for an exchange (configured or seen in trades)."""
    started = time.perf_counter()
    parse_query(request, "/symbols/{exchange}")
    state = _server(request)
    exchange = params.exchange(request.path_params["exchange"], _exchanges(state), status=404)
    names = sorted(_symbols(state, exchange))
    body = _envelope(started, names, exchange=exchange)
    body["symbols"] = names        # the original's field name
    return JSONResponse(body)


# Above this many trades an answer is decoded and encoded in a worker thread, so a 10,000-trade
# request does not stall the event loop (and every WebSocket client) for tens of milliseconds.
_THREAD_ABOVE = 500


async def _trade_response(started: float, chosen: TradeSlice, **fields: Any) -> Response:
    def render() -> bytes:
        return JSONResponse.encode(_envelope(started, chosen.to_json(), **fields))
    body = await asyncio.to_thread(render) if len(chosen) > _THREAD_ABOVE else render()
    return Response(body, media_type="application/json")


async def trades(request: Request) -> Response:
    """Stored trades in a time range, oldest first.

    Without ``start``: the newest ``limit`` trades (up to ``end``).  With ``start``: the first
    ``limit`` trades from ``start`` on, so a client pages forward with ``start`` = last ts + 1 ns.
    """
    started = time.perf_counter()
    query = parse_query(request, "/trades/{symbol}")
    exchange, symbol = _pair(request, query)
    limit = params.limit(query)
    start, end = params.time_range(query)
    chosen = _server(request).store.select(exchange, symbol, limit=limit, start=start, end=end,
                                           newest=start is None)
    return await _trade_response(started, chosen, symbol=symbol, exchange=exchange)


async def recent_trades(request: Request) -> Response:
    """The newest ``limit`` trades, newest first."""
    started = time.perf_counter()
    query = parse_query(request, "/trades/{symbol}/recent")
    exchange, symbol = _pair(request, query)
    chosen = _server(request).store.select_recent(exchange, symbol, params.limit(query))
    return await _trade_response(started, chosen, symbol=symbol, exchange=exchange)


def ohlcv(request: Request) -> Response:
    """OHLCV bars built from trades, oldest first; ``limit`` keeps the newest."""
    started = time.perf_counter()
    query = parse_query(request, "/ohlcv/{symbol}")
    exchange, symbol = _pair(request, query)
    interval = params.interval(query)
    limit = params.limit(query)
    start, end = params.time_range(query)
    bars = _server(request).store.ohlcv(exchange, symbol, interval, limit=limit,
                                        start=start, end=end)
    return JSONResponse(_envelope(started, [b.to_json(interval) for b in bars],
                                  symbol=symbol, exchange=exchange, interval=interval))


def _not_ready(parameter: str, detail: str) -> ParamError:
    # Valid input, data not there yet (book still syncing): 503 + Retry-After, not a 4xx.
    return ParamError(parameter, detail, status=503, error="not_ready")


def book(request: Request) -> Response:
    """One exchange's L2 book (top ``depth`` levels), or ``exchange=all`` for the consolidated
    cross-exchange view."""
    query = parse_query(request, "/book/{symbol}")
    exchange, symbol = _pair(request, query, allow_all=True)
    depth = params.depth(query)
    state = _server(request)
    if exchange == "all":
        consolidated = state.consolidated(symbol)
        if consolidated is None:
            raise _not_ready("symbol", f"no consolidated book for {symbol} yet")
        return JSONResponse({"exchange": "all", **consolidated.depth(depth),
                             "symbol": symbol, "depth": depth, "bbo": consolidated.bbo()})
    ob = state.books(exchange).get(symbol)
    if ob is None:
        raise _not_ready("symbol", f"no {exchange} book for {symbol} yet")
    best_bid, best_ask = ob.best_bid(), ob.best_ask()
    return JSONResponse({
        "exchange": exchange,
        "symbol": symbol,
        "sequence": ob.sequence,
        "depth": depth,
        "bids": [list(level) for level in ob.bids(depth)],
        "asks": [list(level) for level in ob.asks(depth)],
        "best_bid": list(best_bid) if best_bid else None,
        "best_ask": list(best_ask) if best_ask else None,
        "spread": ob.spread(),
        "mid": ob.mid(),
        "crossed": ob.crossed,
        "bid_levels": ob.bid_count,
        "ask_levels": ob.ask_count,
        "checksum": ob.checksum(),
        "price_precision": ob.price_precision,
        "size_precision": ob.size_precision,
    })


def arbitrage(request: Request) -> Response:
    """Recent cross-exchange opportunities for a symbol, newest first."""
    started = time.perf_counter()
    query = parse_query(request, "/arbitrage/{symbol}")
    state = _server(request)
    symbol = params.symbol(request.path_params["symbol"], _symbols(state))
    limit = params.limit(query)
    min_bps = params.number(query, "min_bps", -params.MAX_BPS, -params.MAX_BPS, params.MAX_BPS)
    detector = state.arbitrage
    if detector is None:
        raise ParamError("symbol", "arbitrage detection is not enabled on this server",
                         status=404, error="not_enabled")
    found = detector.recent(symbol, limit, None if "min_bps" not in query else min_bps)
    return JSONResponse(_envelope(started, list(found), symbol=symbol))


ENDPOINTS: dict[str, Callable[[Request], Any]] = {
    "/health": guarded(health),
    "/metrics": guarded(metrics),
    "/summary": guarded(summary),
    "/symbols/{exchange}": guarded(symbols),
    "/trades/{symbol}": guarded(trades),
    "/trades/{symbol}/recent": guarded(recent_trades),
    "/ohlcv/{symbol}": guarded(ohlcv),
    "/book/{symbol}": guarded(book),
    "/arbitrage/{symbol}": guarded(arbitrage),
}
