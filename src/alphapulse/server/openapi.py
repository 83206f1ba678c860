"""The ``/openapi.json`` document (OpenAPI 3.1), written by hand to say exactly what the
endpoints in :mod:`.http` accept and return.

``tests/integration/test_http_api.py`` checks the document against the app: the same paths, the
same query parameters per path (:data:`.http.QUERY_PARAMETERS`), and real responses validated
against the schemas below.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alphapulse import __version__

from .params import DEFAULT_DEPTH, DEFAULT_LIMIT, MAX_BPS, MAX_DEPTH, MAX_LIMIT
from .store import INTERVALS

_DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
            "description": "exact decimal as text"}
_NS = {"type": "integer", "description": "nanoseconds since the Unix epoch"}
_LEVEL = {"type": "array", "prefixItems": [_DECIMAL, _DECIMAL], "minItems": 2, "maxItems": 2,
          "description": "[price, size]"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: Sequence[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


def _envelope(item: dict[str, Any], *extra: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "symbol": {"type": "string"},
        "exchange": {"type": "string"},
        "interval": {"type": "string"},
        "count": {"type": "integer", "minimum": 0},
        "data": {"type": "array", "items": item},
        "processing_time_ms": {"type": "number"},
    }
    keep = ("symbol", *extra, "count", "data", "processing_time_ms")
    return _obj(keep, **{k: v for k, v in props.items() if k in keep})


def _schemas() -> dict[str, Any]:
    trade = _obj(
        ("exchange", "symbol", "native_symbol", "price", "size", "side", "trade_id",
         "timestamp", "ts_event", "ts_recv"),
        exchange={"type": "string"}, symbol={"type": "string"},
        native_symbol={"type": "string", "description": "as the exchange writes it"},
        price=_DECIMAL, size=_DECIMAL,
        side={"type": "string", "enum": ["buy", "sell"], "description": "taker side"},
        trade_id={"type": "string"},
        timestamp={"type": "number", "description": "ts_event in seconds (original API)"},
        ts_event=_NS, ts_recv=_NS)
    bar = _obj(
        ("timestamp", "start", "end", "open", "high", "low", "close", "volume", "trades"),
        timestamp={"type": "number", "description": "bar start, seconds"},
        start=_NS, end=_NS, open=_DECIMAL, high=_DECIMAL, low=_DECIMAL, close=_DECIMAL,
        volume={**_DECIMAL, "description": "exact sum of trade sizes"},
        trades={"type": "integer", "minimum": 1})
    book = _obj(
        ("exchange", "symbol", "sequence", "depth", "bids", "asks", "best_bid", "best_ask",
         "spread", "mid", "crossed", "bid_levels", "ask_levels", "checksum",
         "price_precision", "size_precision"),
        exchange={"type": "string"}, symbol={"type": "string"},
        sequence={"type": "integer", "description": "the book's sequence (as on /ws)"},
        depth={"type": "integer"},
        bids={"type": "array", "items": _LEVEL, "description": "best first"},
        asks={"type": "array", "items": _LEVEL, "description": "best first"},
        best_bid={"oneOf": [_LEVEL, {"type": "null"}]},
        best_ask={"oneOf": [_LEVEL, {"type": "null"}]},
        spread={"oneOf": [_DECIMAL, {"type": "null"}]},
        mid={"oneOf": [_DECIMAL, {"type": "null"}]},
        crossed={"type": "boolean"},
        bid_levels={"type": "integer"}, ask_levels={"type": "integer"},
        checksum={"type": "integer", "description": "Kraken-style CRC32 over the top 10"},
        price_precision={"type": "integer"}, size_precision={"type": "integer"})
    consolidated_level = _obj(("price", "size", "venues"), price=_DECIMAL, size=_DECIMAL,
                              venues={"type": "object", "additionalProperties": _DECIMAL})
    consolidated = _obj(
        ("exchange", "symbol", "depth", "bids", "asks", "venues", "bbo"),
        exchange={"const": "all"}, symbol={"type": "string"}, depth={"type": "integer"},
        bids={"type": "array", "items": consolidated_level},
        asks={"type": "array", "items": consolidated_level},
        venues={"type": "array", "items": {"type": "string"},
                "description": "venues currently contributing"},
        bbo={"type": "object", "description": "best bid/ask across venues with each venue's "
                                              "state (see ConsolidatedBook.bbo)"})
    opportunity = {"type": "object", "required": ["id", "status", "symbol", "buy_exchange",
                                                  "sell_exchange", "net_bps", "detected_ns"],
                   "description": "alphapulse.arbitrage.Opportunity as a dict"}
    summary_pair = _obj(
        ("exchange", "symbol", "trades_total", "trades_stored", "first_trade_ns",
         "last_trade_ns", "rate_1m", "rate_avg"),
        exchange={"type": "string"}, symbol={"type": "string"},
        trades_total={"type": "integer"}, trades_stored={"type": "integer"},
        first_trade_ns=_NS, last_trade_ns=_NS,
        first_trade_time={"type": "number"}, last_trade_time={"type": "number"},
        rate_1m={"type": "number", "description": "trades/s received in the last minute"},
        rate_avg={"type": "number", "description": "trades/s between first and last trade"})
    summary = _obj(
        ("total_trades", "stored_trades", "total_exchanges", "total_symbols",
         "symbols_by_exchange", "start_time", "end_time", "rate_1m", "pairs", "exchanges",
         "symbols", "total_orderbooks"),
        total_trades={"type": "integer"}, stored_trades={"type": "integer"},
        capacity_per_pair={"type": "integer"},
        total_exchanges={"type": "integer"}, total_symbols={"type": "integer"},
        symbols_by_exchange={"type": "object",
                             "additionalProperties": {"type": "array",
                                                      "items": {"type": "string"}}},
        start_time={"type": "number"}, end_time={"type": "number"},
        first_trade_ns=_NS, last_trade_ns=_NS, rate_1m={"type": "number"},
        uptime_seconds={"type": "number"},
        pairs={"type": "array", "items": summary_pair},
        exchanges={"type": "array", "items": {"type": "string"}},
        symbols={"type": "array", "items": {"type": "string"}},
        total_orderbooks={"type": "integer"}, processing_time_ms={"type": "number"})
    health = _obj(("status", "healthy", "store", "version"),
                  status={"type": "string", "enum": ["ok", "degraded", "unhealthy"]},
                  healthy={"type": "boolean"},
                  store={"type": "object"}, version={"type": "string"})
    health["additionalProperties"] = True
    health["description"] = ("Per-collector connection state and last message age, store and "
                             "Redis state; exact members beyond these come from the runtime. "
                             "200 ok/degraded (a Redis writer down: the local data path "
                             "serves), 503 unhealthy (a collector down or silent, or the "
                             "Redis data source down).")
    symbols = _obj(("exchange", "symbols", "count"), exchange={"type": "string"},
                   symbols={"type": "array", "items": {"type": "string"}},
                   count={"type": "integer"}, data={"type": "array"},
                   processing_time_ms={"type": "number"})
    error = _obj(("error", "detail", "status"),
                 error={"type": "string", "examples": ["invalid_parameter", "not_found"]},
                 parameter={"type": "string", "description": "the offending parameter"},
                 detail={"type": "string"}, status={"type": "integer"})
    return {
        "Trade": trade, "Bar": bar, "Book": book, "ConsolidatedBook": consolidated,
        "Opportunity": opportunity, "Summary": summary, "Health": health, "Symbols": symbols,
        "Error": error,
        "TradeList": _envelope(_ref("Trade"), "exchange"),
        "BarList": _envelope(_ref("Bar"), "exchange", "interval"),
        "OpportunityList": _envelope(_ref("Opportunity")),
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "a bad parameter (named in the body)"),
    "404": _json(_ref("Error"), "unknown symbol or exchange (named in the body)"),
}


def _get(summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any],
         **more: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": parameters,
                    "responses": {"200": ok, **_ERRORS, **more}}}


def document(exchanges: Sequence[str], symbols: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI document for a server configured with these exchanges and symbols."""
    configured = list(exchanges)
    ex = {"type": "string", "enum": configured} if configured else {"type": "string"}
    ex_all = {"type": "string", "enum": [*configured, "all"]}
    default_ex = configured[0] if configured else None
    ex_desc = (f"exchange (case-insensitive); default {default_ex!r}, the first configured"
               if default_ex else "exchange")
    sym = {"type": "string", "examples": list(symbols) or ["BTC-USD"]}
    symbol = _path("symbol", sym, "BASE-QUOTE, e.g. BTC-USD (also btc-usd, BTC/USD, BTC_USD); "
                                  "configured: " + (", ".join(symbols) or "none"))
    exchange = _query("exchange", {**ex, **({"default": default_ex} if default_ex else {})},
                      ex_desc)
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                             "default": DEFAULT_LIMIT}, "maximum number of items")
    time_desc = "epoch seconds (fractions allowed) or ISO 8601 (UTC when no offset)"
    times = [
        _query("start", {"type": "string"}, f"inclusive lower bound on ts_event: {time_desc}"),
        _query("end", {"type": "string"}, f"exclusive upper bound on ts_event: {time_desc}"),
        _query("start_time", {"type": "string"}, "alias of start (original API)"),
        _query("end_time", {"type": "string"}, "alias of end (original API)"),
    ]
    not_ready = {"503": _json(_ref("Error"), "the book is not synced yet (Retry-After)")}
    paths = {
        "/health": {"get": {"summary": "Service health", "parameters": [], "responses": {
            "200": _json(_ref("Health"), "healthy"),
            "400": _ERRORS["400"],
            "503": _json(_ref("Health"), "not healthy")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "parameters": [], "responses": {
            "200": {"description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "400": _ERRORS["400"]}}},
        "/openapi.json": {"get": {"summary": "This document", "parameters": [], "responses": {
            "200": _json({"type": "object"}, "OpenAPI 3.1"), "400": _ERRORS["400"]}}},
        "/summary": _get("Counts, symbols, first/last times and rates", [],
                         _json(_ref("Summary"), "store summary")),
        "/symbols/{exchange}": _get(
            "Symbols served for an exchange",
            [_path("exchange", ex, "a configured exchange")], _json(_ref("Symbols"), "symbols")),
        "/trades/{symbol}": _get(
            "Stored trades, oldest first (newest `limit` without `start`; first `limit` "
            "from `start` with it)",
            [symbol, exchange, limit, *times], _json(_ref("TradeList"), "trades")),
        "/trades/{symbol}/recent": _get(
            "The newest trades, newest first", [symbol, exchange, limit],
            _json(_ref("TradeList"), "trades")),
        "/ohlcv/{symbol}": _get(
            "OHLCV bars from trades, oldest first (`limit` keeps the newest)",
            [symbol, exchange,
             _query("interval", {"type": "string", "enum": list(INTERVALS), "default": "1m"},
                    "bar length"),
             limit, *times],
            _json(_ref("BarList"), "bars")),
        "/book/{symbol}": _get(
            "L2 book of one exchange, or the consolidated cross-exchange book",
            [symbol,
             _query("exchange", {**ex_all, **({"default": default_ex} if default_ex else {})},
                    ex_desc + "; 'all' for the consolidated view"),
             _query("depth", {"type": "integer", "minimum": 1, "maximum": MAX_DEPTH,
                              "default": DEFAULT_DEPTH}, "levels per side")],
            _json({"oneOf": [_ref("Book"), _ref("ConsolidatedBook")]}, "the book"),
            **not_ready),
        "/arbitrage/{symbol}": _get(
            "Recent cross-exchange opportunities, newest first (open ones included)",
            [symbol, limit,
             _query("min_bps", {"type": "number", "minimum": -MAX_BPS, "maximum": MAX_BPS},
                    "minimum net edge at detection, basis points")],
            _json(_ref("OpportunityList"), "opportunities")),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "AlphaPulse market-data API", "version": __version__,
                 "description": "The original MarketDataRepository interface over HTTP plus "
                                "books and arbitrage. Unknown query parameters are rejected "
                                "(400). Live streams: WebSocket /ws (docs/websocket.md)."},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
