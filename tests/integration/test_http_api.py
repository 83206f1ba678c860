"""The HTTP API over a state fed from the fixtures: values checked, errors checked, OpenAPI checked.

Most tests go through httpx's in-process ASGI transport (fast); ``test_real_socket_*`` run the
same app in uvicorn on a pre-bound loopback socket and talk real HTTP to it.

The oracle is independent of the server code: the Coinbase capture is read here with ``json``,
its trades turned into values with ``Decimal``, its book built with the ``OrderBook`` core.
"""
from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from alphapulse import OrderBook
from alphapulse.arbitrage import ArbitrageDetector
from alphapulse.events import BookSnapshot, Trade
from alphapulse.server.app import build_app
from alphapulse.server.http import QUERY_PARAMETERS
from alphapulse.server.metrics import Metrics
from alphapulse.server.store import INTERVALS, TradeStore

SYMBOL = "BTC-USD"


def _ns(iso: str) -> int:
    """'2026-11-27T10:00:00.123456789Z' -> ns (nanosecond ISO, which datetime cannot parse)."""
    day, _, rest = iso.rstrip("Z").partition("T")
    hms, _, frac = rest.partition(".")
    from datetime import datetime
    whole = datetime.fromisoformat(f"{day}T{hms}+00:00")
    return int(whole.timestamp()) * 10**9 + int((frac + "000000000")[:9])


@dataclass
class Capture:
    trades: list[Trade]
    book: OrderBook
    truth: dict[str, Any]


def load_coinbase(fixtures_dir: Path) -> Capture:
    path = fixtures_dir / "generated" / "coinbase-clean.jsonl"
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    book = OrderBook(SYMBOL, 2, 8, exchange="coinbase")
    trades = []
    recv = 1_800_000_000 * 10**9
    for line in path.read_text().splitlines():
        msg = json.loads(line)
        recv += 1000
        for event in msg.get("events", ()):
            if msg["channel"] == "l2_data":
                levels = [(u["side"], u["price_level"], u["new_quantity"]) for u in event["updates"]]
                if event["type"] == "snapshot":
                    book.snapshot([(p, s) for side, p, s in levels if side == "bid"],
                                  [(p, s) for side, p, s in levels if side != "bid"])
                else:
                    book.apply(levels)
            elif msg["channel"] == "market_trades":
                for t in event["trades"]:
                    # Coinbase reports the maker's side; the taker's is the other one.
                    taker = "sell" if t["side"] == "BUY" else "buy"
                    trades.append(Trade("coinbase", t["product_id"], t["product_id"], t["price"],
                                        t["size"], taker, t["trade_id"], _ns(t["time"]), recv))
    return Capture(trades, book, truth)


@dataclass
class FixtureState:
    """A ServerState over fixture data (what the runtime provides in production)."""

    store: TradeStore
    metrics: Metrics
    live: dict[str, dict[str, OrderBook]]
    arbitrage: ArbitrageDetector | None
    exchanges: tuple[str, ...] = ("coinbase", "kraken")
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    healthy: bool = True
    ws_endpoint: Any = None
    calls: list[str] = field(default_factory=list)

    def books(self, exchange: str) -> Mapping[str, OrderBook]:
        return self.live.get(exchange, {})

    def consolidated(self, symbol: str) -> Any:
        return None if self.arbitrage is None else self.arbitrage.books.get(symbol)

    def health(self) -> dict[str, Any]:
        return {"healthy": self.healthy,
                "collectors": {"coinbase": {"connected": self.healthy, "last_message_age_s": 0.1}},
                "redis": {"enabled": False}}

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")


@pytest.fixture(scope="module")
def capture(fixtures_dir: Path) -> Capture:
    return load_coinbase(fixtures_dir)


def make_state(capture: Capture, *, capacity: int = 100_000) -> FixtureState:
    store = TradeStore(capacity)
    for trade in capture.trades:
        store.add(trade)
    metrics = Metrics()
    metrics.bind_store(store.sizes)
    # A Kraken book priced well below Coinbase: the detector must see buy-kraken/sell-coinbase.
    kraken = OrderBook(SYMBOL, 1, 8, exchange="kraken")
    kraken.snapshot([("90000.0", "1.5")], [("90001.0", "2.25")])
    detector = ArbitrageDetector()
    now = time.time_ns()
    for ob in (capture.book, kraken):
        detector.on_event(BookSnapshot(ob.exchange, SYMBOL, SYMBOL, ob.snapshot_delta(), now, now))
    return FixtureState(store, metrics, {"coinbase": {SYMBOL: capture.book}}, detector)


@pytest.fixture
async def client(capture: Capture) -> AsyncIterator[httpx.AsyncClient]:
    state = make_state(capture)
    app = build_app(state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        c.state = state  # type: ignore[attr-defined]
        yield c


# --- values -----------------------------------------------------------------------------------

async def test_trades_match_the_capture(client: httpx.AsyncClient, capture: Capture) -> None:
    assert len(capture.trades) == capture.truth["trades"] == 394
    r = await client.get(f"/trades/{SYMBOL}", params={"exchange": "coinbase", "limit": 10000})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 394 and body["symbol"] == SYMBOL and body["exchange"] == "coinbase"
    assert [t["trade_id"] for t in body["data"]] == [t.trade_id for t in capture.trades]
    first, got = capture.trades[0], body["data"][0]
    assert (got["price"], got["size"], got["side"], got["ts_event"]) == (
        first.price, first.size, first.side, first.ts_event)
    assert isinstance(got["price"], str)        # exact decimal text, never a float

    r = await client.get(f"/trades/{SYMBOL}", params={"limit": 5})      # default exchange
    assert [t["trade_id"] for t in r.json()["data"]] == [t.trade_id for t in capture.trades[-5:]]


async def test_trades_time_window(client: httpx.AsyncClient, capture: Capture) -> None:
    t = capture.trades
    start, end = t[100].ts_event, t[200].ts_event
    expected = [x.trade_id for x in t if start <= x.ts_event < end]
    seconds = lambda ns: f"{ns // 10**9}.{ns % 10**9:09d}"   # noqa: E731
    r = await client.get(f"/trades/{SYMBOL}",
                         params={"start": seconds(start), "end": seconds(end), "limit": 10000})
    assert [x["trade_id"] for x in r.json()["data"]] == expected
    r = await client.get(f"/trades/{SYMBOL}",
                         params={"start_time": seconds(start), "limit": 3})
    assert [x["trade_id"] for x in r.json()["data"]] == [x.trade_id for x in t
                                                         if x.ts_event >= start][:3]


async def test_recent_trades_newest_first(client: httpx.AsyncClient, capture: Capture) -> None:
    r = await client.get(f"/trades/{SYMBOL.lower()}/recent", params={"limit": 3})
    assert [x["trade_id"] for x in r.json()["data"]] == [t.trade_id for t in capture.trades[::-1][:3]]


@pytest.mark.parametrize("interval", sorted(INTERVALS))
async def test_ohlcv_equals_bars_computed_from_the_capture(client: httpx.AsyncClient,
                                                           capture: Capture, interval: str) -> None:
    width = INTERVALS[interval]
    expected: dict[int, list[Any]] = {}
    for t in capture.trades:      # independent oracle: in arrival order, exact Decimals
        start = t.ts_event - t.ts_event % width
        p, s = Decimal(t.price), Decimal(t.size)
        bar = expected.setdefault(start, [p, p, p, p, Decimal(0), 0])
        bar[1], bar[2], bar[3] = max(bar[1], p), min(bar[2], p), p
        bar[4] += s
        bar[5] += 1
    r = await client.get(f"/ohlcv/{SYMBOL}", params={"interval": interval, "limit": 10000})
    assert r.status_code == 200
    data = r.json()["data"]
    assert [b["start"] for b in data] == sorted(expected)
    for b in data:
        o, h, lo, c, v, n = expected[b["start"]]
        assert (Decimal(b["open"]), Decimal(b["high"]), Decimal(b["low"]), Decimal(b["close"]),
                Decimal(b["volume"]), b["trades"]) == (o, h, lo, c, v, n)
        assert b["end"] - b["start"] == width
    assert sum(b["trades"] for b in data) == 394


async def test_book_matches_truth(client: httpx.AsyncClient, capture: Capture) -> None:
    r = await client.get(f"/book/{SYMBOL}", params={"exchange": "coinbase", "depth": 5})
    assert r.status_code == 200
    book = r.json()
    assert book["best_bid"][0] == capture.truth["final_best_bid"]
    assert book["best_ask"][0] == capture.truth["final_best_ask"]
    assert len(book["bids"]) == 5 and book["bids"][0] == book["best_bid"]
    assert book["sequence"] == capture.book.sequence
    assert book["checksum"] == capture.book.checksum()
    assert Decimal(book["spread"]) == (Decimal(capture.truth["final_best_ask"])
                                       - Decimal(capture.truth["final_best_bid"]))
    assert book["crossed"] is False


async def test_consolidated_book_and_arbitrage(client: httpx.AsyncClient, capture: Capture) -> None:
    r = await client.get(f"/book/{SYMBOL}", params={"exchange": "all", "depth": 3})
    assert r.status_code == 200
    view = r.json()
    assert view["exchange"] == "all" and view["depth"] == 3
    assert view["bbo"]["bid"]["exchange"] == "coinbase"
    assert view["bbo"]["bid"]["price"] == capture.truth["final_best_bid"]
    assert view["bbo"]["ask"] == {"price": "90001.0", "size": "2.25000000", "exchange": "kraken"}
    assert view["asks"][0]["venues"] == {"kraken": "2.25000000"}

    r = await client.get(f"/arbitrage/{SYMBOL}", params={"limit": 5})
    assert r.status_code == 200
    (opp,) = r.json()["data"]
    assert (opp["buy_exchange"], opp["sell_exchange"], opp["status"]) == ("kraken", "coinbase", "open")
    assert opp["buy_price"] == "90001.0" and opp["sell_price"] == capture.truth["final_best_bid"]
    r = await client.get(f"/arbitrage/{SYMBOL}", params={"min_bps": 99999})
    assert r.json()["count"] == 0


async def test_symbols_summary_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/symbols/coinbase")
    assert r.json()["symbols"] == ["BTC-USD", "ETH-USD"]
    r = await client.get("/summary")
    s = r.json()
    assert s["total_trades"] == 394 and s["stored_trades"] == 394
    (pair,) = s["pairs"]
    assert pair["exchange"] == "coinbase" and pair["trades_stored"] == 394
    assert s["symbols_by_exchange"] == {"coinbase": ["BTC-USD"]}
    assert s["total_orderbooks"] == 1
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["store"]["trades_stored"] == 394
    client.state.healthy = False  # type: ignore[attr-defined]
    r = await client.get("/health")
    assert r.status_code == 503 and r.json()["healthy"] is False


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    for sym in ("BTC-USD", "ETH-USD", "XRP-USD"):
        await client.get(f"/trades/{sym}")
    await client.get("/no/such/path/12345")
    text = (await client.get("/metrics")).text
    assert 'alphapulse_http_requests_total{method="GET",route="/trades/{symbol}",status="200"} 2.0' in text
    assert 'alphapulse_http_requests_total{method="GET",route="/trades/{symbol}",status="404"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/path" not in text and "XRP" not in text
    assert 'alphapulse_store_trades{exchange="coinbase",symbol="BTC-USD"} 394.0' in text


# --- errors -------------------------------------------------------------------------------------

BAD_REQUESTS = [
    (f"/trades/{SYMBOL}?limit=0", 400, "limit"),
    (f"/trades/{SYMBOL}?limit=10001", 400, "limit"),
    (f"/trades/{SYMBOL}?limit=ten", 400, "limit"),
    (f"/trades/{SYMBOL}?limit=1&limit=2", 400, "limit"),
    (f"/trades/{SYMBOL}?exchange=ftx", 400, "exchange"),
    (f"/trades/{SYMBOL}?start=yesterday", 400, "start"),
    (f"/trades/{SYMBOL}?start=20&end=10", 400, "end"),
    (f"/trades/{SYMBOL}?limt=3", 400, "limt"),
    ("/trades/XRP-USD", 404, "symbol"),
    ("/trades/not-a-symbol!", 400, "symbol"),
    (f"/trades/{SYMBOL}/recent?limit=-1", 400, "limit"),
    (f"/ohlcv/{SYMBOL}?interval=2m", 400, "interval"),
    (f"/ohlcv/{SYMBOL}?interval=1m&start=nan", 400, "start"),
    ("/symbols/ftx", 404, "exchange"),
    ("/symbols/binanceus", 404, "exchange"),   # a known exchange, but not configured here
    (f"/book/{SYMBOL}?depth=0", 400, "depth"),
    (f"/book/{SYMBOL}?exchange=kraken", 503, "symbol"),   # configured, book not synced
    ("/book/ETH-USD?exchange=all", 503, "symbol"),
    (f"/arbitrage/{SYMBOL}?min_bps=inf", 400, "min_bps"),
    ("/summary?verbose=1", 400, "verbose"),
    ("/health?x=1", 400, "x"),
]


@pytest.mark.parametrize(("url", "status", "parameter"), BAD_REQUESTS)
async def test_bad_input_is_a_json_error_naming_the_parameter(
        client: httpx.AsyncClient, url: str, status: int, parameter: str) -> None:
    r = await client.get(url)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["parameter"] == parameter and body["status"] == status and body["detail"]


async def test_unknown_path_wrong_method_and_oversized(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await client.post("/summary", content=b"{}")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert "GET" in r.headers["allow"]
    r = await client.request("GET", "/summary", content=b"x" * (65 * 1024))
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = await client.get("/summary", params={"pad": "x" * 9000})
    assert r.status_code == 414
    r = await client.get("/summary", headers={"content-length": "abc"})
    assert r.status_code == 400


async def test_fuzzed_parameters_never_5xx(client: httpx.AsyncClient) -> None:
    nasty = ["", " ", "-0", "1e309", "nan", "%00", "\u2603", "9" * 300, "../../etc",
             "1;DROP", "[1]", "{}", "0x1f", "1_000", "ALL", "Coinbase", "2026-02-30"]
    paths = [f"/trades/{SYMBOL}", f"/trades/{SYMBOL}/recent", f"/ohlcv/{SYMBOL}",
             f"/book/{SYMBOL}", f"/arbitrage/{SYMBOL}"]
    for path in paths:
        route = path.replace(SYMBOL, "{symbol}")
        for name in QUERY_PARAMETERS[route]:
            for value in nasty:
                r = await client.get(path, params={name: value})
                assert r.status_code < 500 or r.json()["error"] == "not_ready", (path, name, value)
                assert "application/json" in r.headers["content-type"]
    for value in nasty[1:]:
        r = await client.get(f"/trades/{value}")
        assert r.status_code < 500, value


# --- OpenAPI ------------------------------------------------------------------------------------

def _validate(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "$") -> None:
    """A JSON Schema subset validator: enough for the document's own keywords."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return _validate(value, doc["components"]["schemas"][name], doc, where)
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            try:
                _validate(value, option, doc, where)
                matches += 1
            except AssertionError:
                pass
        assert matches == 1, f"{where}: {matches} oneOf branches match"
        return None
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
             "integer": int, "number": (int, float)}
    if kind:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
        if kind in ("integer", "number"):
            assert not isinstance(value, bool), where
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
    if "minimum" in schema:
        assert value >= schema["minimum"], where
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            assert name in value, f"{where}: missing {name!r}"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                _validate(value[name], sub, doc, f"{where}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in schema.get("properties", {}):
                    _validate(item, extra, doc, f"{where}.{name}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if sub:
                _validate(item, sub, doc, f"{where}[{i}]")
    return None


async def test_openapi_matches_the_app(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == set(QUERY_PARAMETERS)
    for path, item in doc["paths"].items():
        declared = {p["name"] for p in item["get"]["parameters"] if p["in"] == "query"}
        assert declared == set(QUERY_PARAMETERS[path]), path
        in_path = {p["name"] for p in item["get"]["parameters"] if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), path
    ex = next(p for p in doc["paths"]["/book/{symbol}"]["get"]["parameters"] if p["name"] == "exchange")
    assert ex["schema"]["enum"] == ["coinbase", "kraken", "all"]
    routes = {getattr(r, "path", None) for r in client._transport.app.routes}  # type: ignore[attr-defined]
    assert set(QUERY_PARAMETERS) <= routes


@pytest.mark.parametrize(("url", "path", "status"), [
    (f"/trades/{SYMBOL}?limit=50", "/trades/{symbol}", "200"),
    (f"/trades/{SYMBOL}/recent", "/trades/{symbol}/recent", "200"),
    (f"/ohlcv/{SYMBOL}?interval=5m", "/ohlcv/{symbol}", "200"),
    (f"/book/{SYMBOL}", "/book/{symbol}", "200"),
    (f"/book/{SYMBOL}?exchange=all", "/book/{symbol}", "200"),
    (f"/arbitrage/{SYMBOL}", "/arbitrage/{symbol}", "200"),
    ("/symbols/coinbase", "/symbols/{exchange}", "200"),
    ("/summary", "/summary", "200"),
    ("/health", "/health", "200"),
    (f"/trades/{SYMBOL}?limit=0", "/trades/{symbol}", "400"),
    ("/trades/XRP-USD", "/trades/{symbol}", "404"),
    (f"/book/{SYMBOL}?exchange=kraken", "/book/{symbol}", "503"),
])
async def test_responses_follow_the_openapi_schemas(client: httpx.AsyncClient, url: str,
                                                    path: str, status: str) -> None:
    doc = (await client.get("/openapi.json")).json()
    r = await client.get(url)
    assert str(r.status_code) == status
    schema = doc["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"]
    _validate(r.json(), schema, doc)


# --- a real socket ----------------------------------------------------------------------------

async def test_real_socket_uvicorn(capture: Capture, loopback_socket: socket.socket) -> None:
    state = make_state(capture)
    server = uvicorn.Server(uvicorn.Config(build_app(state), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[loopback_socket]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started and state.calls == ["start"]
        host, port = loopback_socket.getsockname()
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
            r = await c.get(f"/trades/{SYMBOL}/recent", params={"limit": 2})
            assert r.status_code == 200
            assert [t["trade_id"] for t in r.json()["data"]] == [
                capture.trades[-1].trade_id, capture.trades[-2].trade_id]
            r = await c.get(f"/ohlcv/{SYMBOL}", params={"interval": "1d"})
            (bar,) = r.json()["data"]
            assert bar["trades"] == 394
            assert Decimal(bar["volume"]) == sum(Decimal(t.size) for t in capture.trades)
            r = await c.get("/metrics")
            assert r.headers["content-type"].startswith("text/plain")
            assert "process_resident_memory_bytes" in r.text
            # A raw, malformed request line: uvicorn answers 400 and the server survives.
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GARBAGE\r\n\r\n")
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            assert b" 400 " in status_line
            assert (await c.get("/health")).status_code == 200
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    assert state.calls == ["start", "stop"]


async def test_large_answers_rendered_off_loop_are_complete(capture: Capture) -> None:
    state = make_state(capture, capacity=5000)
    last = capture.trades[-1]
    for i in range(4000):          # past the thread threshold, and wrapping the buffer
        state.store.add(Trade("coinbase", SYMBOL, SYMBOL, f"{96000 + i % 7}.01", "0.5", "buy",
                              f"x{i}", last.ts_event + i + 1, last.ts_recv + i + 1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(state)),
                                 base_url="http://test") as c:
        r = await c.get(f"/trades/{SYMBOL}", params={"limit": 10000})
        data = r.json()["data"]
        assert len(data) == 4394 and data[-1]["trade_id"] == "x3999"
        assert [t["trade_id"] for t in data[:394]] == [t.trade_id for t in capture.trades]
        r = await c.get(f"/trades/{SYMBOL}/recent", params={"limit": 3000})
        data = r.json()["data"]
        assert len(data) == 3000 and data[0]["trade_id"] == "x3999" and data[-1]["trade_id"] == "x1000"
