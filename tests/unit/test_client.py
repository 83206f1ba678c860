"""The HTTP client against a real server on loopback, and against misbehaving peers."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
import uvicorn

from alphapulse import OrderBook
from alphapulse.client import AsyncMarketDataClient, MarketDataClient, MarketDataRepository
from alphapulse.errors import ClientError
from alphapulse.events import Trade
from alphapulse.server.app import build_app
from alphapulse.server.metrics import Metrics
from alphapulse.server.store import TradeStore

BASE = 1_700_000_000 * 10**9   # 2023-11-14T22:13:20Z


class State:
    def __init__(self) -> None:
        self.store = TradeStore()
        self.metrics = Metrics(process=False)
        self.exchanges = ("kraken", "coinbase")
        self.symbols = ("BTC-USD",)
        self.arbitrage = None
        self.ws_endpoint = None
        self.healthy = True
        book = OrderBook("BTC-USD", 1, 8, exchange="kraken")
        book.snapshot([("65000.1", "0.5"), ("65000.0", "1")], [("65001.0", "2")])
        self._books = {"kraken": {"BTC-USD": book}}
        for i in range(30):
            self.store.add(Trade("kraken", "BTC-USD", "BTC/USD", f"6500{i % 10}.{i % 10}",
                                 "0.00100000", "buy" if i % 3 else "sell", str(i),
                                 BASE + i * 10 * 10**9, BASE + i * 10 * 10**9 + 7))

    def books(self, exchange: str) -> dict[str, OrderBook]:
        return self._books.get(exchange, {})

    def consolidated(self, symbol: str) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"healthy": self.healthy}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, State]]:
    """The real app in uvicorn, in a thread with its own loop, on a pre-bound loopback socket."""
    # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (else ~40 ms per answer).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    state = State()
    srv = uvicorn.Server(uvicorn.Config(build_app(state), lifespan="on", log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def test_repository_methods(server: tuple[str, State]) -> None:
    url, state = server
    client = MarketDataRepository(url, timeout=5)
    trades = client.get_trades("BTC-USD", limit=5)            # default exchange: kraken
    assert [t.trade_id for t in trades] == ["25", "26", "27", "28", "29"]
    assert trades[-1] == state.store.trades("kraken", "BTC-USD")[-1]    # every field, exactly
    window = client.get_trades("BTC-USD", "kraken",
                               start_time=datetime.fromtimestamp(BASE / 1e9 + 100, timezone.utc),
                               end_time=BASE / 1e9 + 150)
    assert [t.trade_id for t in window] == ["10", "11", "12", "13", "14"]
    recent = client.get_recent_trades("btc-usd", limit=2)
    assert [t.trade_id for t in recent] == ["29", "28"]
    bars = client.get_ohlcv("BTC-USD", interval="1m")
    assert sum(b.trades for b in bars) == 30
    assert sum((b.volume for b in bars), Decimal(0)) == Decimal("0.03")
    assert bars[0].open == Decimal("65000.0") and bars[0].start == BASE - BASE % (60 * 10**9)
    assert client.get_symbols("kraken") == ["BTC-USD"]
    summary = client.get_summary()
    assert summary["total_trades"] == 30
    book = client.get_book("BTC-USD", depth=1)
    assert book["bids"] == [["65000.1", "0.50000000"]] and book["best_ask"] == ["65001.0", "2.00000000"]
    assert "alphapulse_http_requests_total" in client.get_metrics()


def test_health_returns_the_report_even_when_unhealthy(server: tuple[str, State]) -> None:
    url, state = server
    client = MarketDataClient(url)
    assert client.health()["healthy"] is True
    state.healthy = False
    try:
        report = client.health()
    finally:
        state.healthy = True
    assert report["healthy"] is False and report["status"] == "unhealthy"


def test_http_errors_name_the_parameter(server: tuple[str, State]) -> None:
    client = MarketDataClient(server[0])
    with pytest.raises(ClientError) as info:
        client.get_trades("BTC-USD", limit=20_000)
    assert info.value.status == 400 and info.value.parameter == "limit"  # type: ignore[attr-defined]
    assert "10000" in str(info.value)
    with pytest.raises(ClientError) as info:
        client.get_recent_trades("DOGE-USD")
    assert info.value.status == 404 and info.value.parameter == "symbol"  # type: ignore[attr-defined]
    with pytest.raises(ClientError) as info:
        client.get_ohlcv("BTC-USD", interval="7m")
    assert info.value.parameter == "interval"  # type: ignore[attr-defined]
    with pytest.raises(ClientError) as info:
        client.get_symbols("mtgox")
    assert info.value.status == 404
    with pytest.raises(ClientError) as info:
        client.get_book("BTC-USD", exchange="coinbase")          # configured, no book yet
    assert info.value.status == 503


def test_async_client(server: tuple[str, State]) -> None:
    async def main() -> None:
        client = AsyncMarketDataClient(server[0], timeout=5)
        trades, symbols = await asyncio.gather(client.get_recent_trades("BTC-USD", limit=1),
                                               client.get_symbols("kraken"))
        assert trades[0].trade_id == "29" and symbols == ["BTC-USD"]
    asyncio.run(main())


def test_timeout_is_a_client_error(loopback_socket: socket.socket) -> None:
    # The peer accepts (the kernel does, from the backlog) and never answers.
    port = loopback_socket.getsockname()[1]
    client = MarketDataClient(f"http://127.0.0.1:{port}", timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ClientError) as info:
        client.get_summary()
    assert info.value.status is None and "timed out" in str(info.value)
    assert time.monotonic() - started < 5


def test_unreachable_server_is_a_client_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                       # nothing listens there now
    with pytest.raises(ClientError) as info:
        MarketDataClient(f"http://127.0.0.1:{port}", timeout=2).get_symbols("kraken")
    assert info.value.status is None and "cannot reach" in str(info.value)


def _one_shot_http(sock: socket.socket, response: bytes) -> threading.Thread:
    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(response)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_non_json_answer_is_a_client_error(loopback_socket: socket.socket) -> None:
    body = b"<html>proxy error</html>"
    thread = _one_shot_http(loopback_socket, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    port = loopback_socket.getsockname()[1]
    with pytest.raises(ClientError) as info:
        MarketDataClient(f"http://127.0.0.1:{port}", timeout=2).get_summary()
    assert info.value.status == 200 and "not JSON" in str(info.value)
    thread.join(5)


def test_error_without_json_body(loopback_socket: socket.socket) -> None:
    thread = _one_shot_http(loopback_socket, b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n"
                            b"Connection: close\r\n\r\nbad")
    port = loopback_socket.getsockname()[1]
    with pytest.raises(ClientError) as info:
        MarketDataClient(f"http://127.0.0.1:{port}", timeout=2).get_summary()
    assert info.value.status == 502 and "bad" in str(info.value)
    thread.join(5)


def test_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALPHAPULSE_API_URL", raising=False)
    monkeypatch.setenv("RUST_API_URL", "http://example.invalid:3001/")
    monkeypatch.setenv("ALPHAPULSE_API_TIMEOUT", "2.5")
    client = MarketDataClient.from_env()
    assert client.base_url == "http://example.invalid:3001" and client.timeout == 2.5
    monkeypatch.setenv("ALPHAPULSE_API_URL", "http://127.0.0.1:9")
    assert MarketDataClient.from_env().base_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError):
        MarketDataClient("localhost:3001")
    with pytest.raises(ValueError):
        MarketDataClient("http://x", timeout=0)


def test_client_imports_no_server_dependency() -> None:
    code = ("import sys, alphapulse.client; "
            "bad = [m for m in ('starlette', 'uvicorn', 'prometheus_client', 'redis', "
            "'httpx', 'alphapulse.server') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
