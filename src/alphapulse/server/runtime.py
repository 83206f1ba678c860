"""Wiring: collectors (or Redis) -> hub -> store, metrics, WebSocket, arbitrage, shm, Redis.

One process, one event loop.  The collectors' read loops call :meth:`Hub.publish` for every
event; the subscribers, in order, are: the book mirror (only when there is no collector whose
books can be read directly), the shared-memory feed publisher (first of the consumers, so local
strategies wait for nothing else), the trade store (+ OHLCV), the arbitrage detector (which owns
the consolidated books), the WebSocket fan-out, the Redis writer and the metrics.  Each is synchronous and non-blocking; the HTTP API (uvicorn, same loop) reads
the same objects.  See docs/websocket.md and README for the two-process design note.

Shutdown (SIGINT/SIGTERM, or :meth:`Runtime.stop`): uvicorn stops accepting and closes the
WebSocket clients, the collectors close their exchange sockets, the Redis writer flushes what
it can within a bound, the shm rings are closed and unlinked, recordings are flushed and closed,
demo replay servers are shut.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn

from .._book import OrderBook
from ..arbitrage import ArbitrageDetector, Opportunity, run_expiry
from ..errors import ConfigError
from ..events import Trade
from .. import eventloop
from .config import Config
from .gcpause import freeze_startup_heap
from .health import report as health_report
from .hub import BookMirror, Hub
from .metrics import Metrics
from .store import TradeStore
from .ws import WsFanout

log = logging.getLogger(__name__)

DEMO_SYMBOLS = ("BTC-USD",)
DEMO_FILES = {
    "kraken": "demo-kraken-btcusd.jsonl.gz",
    "coinbase": "demo-coinbase-btcusd.jsonl.gz",
    "binanceus": "demo-binanceus-btcusd.jsonl.gz",
}


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def redis_prefix(config: Config) -> str:
    """Stream keys start with this: ``alphapulse:<name>:trades:<exchange>:<symbol>``."""
    return f"alphapulse:{config.name}"


def shm_dir(config: Config) -> Path:
    """Where ring files go: ``--shm-dir``, else /dev/shm, else the temp directory."""
    if config.shm_dir is not None:
        return config.shm_dir
    dev_shm = Path("/dev/shm")
    return dev_shm if dev_shm.is_dir() else Path(tempfile.gettempdir())


def demo_capture(exchange: str) -> Path:
    """The bundled demo capture for ``exchange``."""
    return Path(str(resources.files("alphapulse") / "_data" / DEMO_FILES[exchange]))


class Runtime:
    """The running service.  Implements the ``ServerState`` the HTTP app reads."""

    def __init__(self, config: Config, *, sock: socket.socket | None = None,
                 demo_speed: float | None = 1.0) -> None:
        self.config = config
        self._sock = sock
        self._demo_speed = demo_speed
        self.started_ns = time.time_ns()
        self.metrics = Metrics()
        self.store = TradeStore(config.trades_per_symbol)
        self.metrics.bind_store(self.store.sizes)
        self.hub = Hub()
        self.detector = ArbitrageDetector(
            fees=config.arb_fees_bps or None, threshold_bps=config.arb_threshold_bps,
            max_age_s=config.arb_max_age_s, notional=config.arb_notional)
        self.detector.callbacks.append(self._on_opportunity)
        self.collectors: dict[str, Any] = {}
        self.mirror: BookMirror | None = None
        self.redis_writer: Any = None
        self.redis_reader: Any = None
        self.shm: Any = None
        if config.demo:
            config = self.config = config.replace(symbols=DEMO_SYMBOLS)
        self.ws = WsFanout(exchanges=config.exchanges, symbols=config.symbols, books=self.book,
                           queue_size=config.ws_queue_size, metrics=self.metrics, bbo=self.bbo,
                           slow_client_s=config.ws_slow_client_s)
        self.ws_endpoint = self.ws.endpoint
        self.app: Any = None
        self.server: _Server | None = None
        self.port: int | None = None
        self._recorders: list[Any] = []
        self._replays: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._server_task: asyncio.Task[None] | None = None
        self._owned_sock: socket.socket | None = None
        self._split: Any = None
        self._stopped = False

    # --- ServerState: what the HTTP app and the WebSocket endpoint read ------------------------

    @property
    def exchanges(self) -> tuple[str, ...]:
        return self.config.exchanges

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.config.symbols

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        """The live book (None while it is syncing or resyncing)."""
        if self.mirror is not None:
            return self.mirror.book(exchange, symbol)
        collector = self.collectors.get(exchange)
        if collector is None or collector.state(symbol) != "live":
            return None
        return collector.books.get(symbol)

    def books(self, exchange: str) -> dict[str, OrderBook]:
        """The live books of one exchange, by symbol."""
        out = {}
        for symbol in self.config.symbols:
            book = self.book(exchange, symbol)
            if book is not None:
                out[symbol] = book
        return out

    def consolidated(self, symbol: str) -> Any:
        """The cross-exchange book for ``symbol`` (None before any venue has a book)."""
        return self.detector.books.get(symbol)

    @property
    def arbitrage(self) -> ArbitrageDetector:
        return self.detector

    def bbo(self, symbol: str) -> dict[str, Any] | None:
        book = self.detector.books.get(symbol)
        return None if book is None else book.bbo()

    def health(self) -> dict[str, Any]:
        """The ``GET /health`` report (see :func:`.health.report`: 503 unless healthy)."""
        return health_report(self)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the data side (the app's lifespan calls this once uvicorn is up)."""
        config = self.config
        if config.demo:
            config = await self._start_demo(config)
            self.config = config
        if config.source == "redis" or config.processes == 2:
            # First: the shm publisher reads this mirror's book at the delta's sequence.
            self.mirror = BookMirror()
            self.hub.subscribe(self.mirror)
        # The strategies' rings next, ahead of the store, the arbitrage detector, the WebSocket
        # fan-out, Redis and the metrics: ring writes never wait (drop policy), so the local
        # strategies' latency does not include everyone else's work.  It also puts a book delta
        # on the ring before the arbitrage opportunity it triggers (the detector publishes
        # opportunities to the rings through _on_opportunity).
        self._start_shm(config)
        self.hub.subscribe(self.store, types=(Trade,))
        self.hub.subscribe(self.detector)
        self.hub.subscribe(self.ws)
        if config.redis_url and config.source == "exchanges":
            from .redis_streams import RedisWriter
            self.redis_writer = RedisWriter(
                config.redis_url, prefix=redis_prefix(config), maxlen=config.redis_maxlen,
                batch_size=config.buffer_size, batch_timeout_ms=config.batch_timeout_ms,
                buffer_limit=config.redis_buffer, checkpoint_s=config.redis_snapshot_s,
                books=self.book, metrics=self.metrics)
            self.hub.subscribe(self.redis_writer)
            await self.redis_writer.start()
        # Last: it records each event's frame-receipt-to-publication time.
        self.hub.subscribe(self.metrics)

        if config.source == "redis":
            from .redis_streams import RedisReader
            assert config.redis_url is not None
            self.redis_reader = RedisReader(
                config.redis_url, exchanges=config.exchanges, symbols=config.symbols,
                sink=self.hub.publish, prefix=redis_prefix(config), metrics=self.metrics,
                have_sequence=self._mirror_sequence)
            await self.redis_reader.start()
        elif config.processes == 2:
            from .split import CollectorProcess
            self._split = CollectorProcess(config, self.hub.publish, ring_dir=shm_dir(config),
                                           metrics=self.metrics)
            await self._split.start()
            self.collectors = self._split.collectors
        else:
            self._start_collectors(config)
        self._tasks.append(asyncio.create_task(run_expiry(self.detector), name="arb-expiry"))
        if config.source == "exchanges":
            self._tasks.append(asyncio.create_task(self._export_connection_state(),
                                                   name="connection-metrics"))

    def _start_collectors(self, config: Config) -> None:
        from ..exchanges import get_collector

        recorder_cls = None
        if config.record_dir is not None:
            from ..capture import Recorder
            config.record_dir.mkdir(parents=True, exist_ok=True)
            recorder_cls = Recorder
        for name in config.exchanges:
            recorder = recorder_cls(config.record_dir, name) if recorder_cls else None
            if recorder is not None:
                self._recorders.append(recorder)
            kwargs: dict[str, Any] = {}
            if config.demo:
                # A finished demo capture leaves the feed idle on purpose: no staleness reconnect.
                kwargs["stale_after"] = {}
            collector = get_collector(name)(
                list(config.symbols), url=config.ws_url(name), rest_url=config.rest_url(name),
                sink=self.hub.publish, recorder=recorder, **kwargs)
            self.collectors[name] = collector
            self._tasks.append(asyncio.create_task(collector.run(), name=f"collector-{name}"))

    def _start_shm(self, config: Config) -> None:
        try:
            from . import shm
        except ImportError:   # the feed publisher has not landed in this tree
            log.info("shared-memory feed not available (alphapulse.server.shm missing)")
            return
        self.shm = shm.make_publisher(self, config)
        if self.shm is not None:
            self.hub.subscribe(self.shm)

    async def _start_demo(self, config: Config) -> Config:
        from ..replay import serve

        self._replays = contextlib.AsyncExitStack()
        changes: dict[str, Any] = {}
        for name in config.exchanges:
            server = await self._replays.enter_async_context(
                serve(name, [demo_capture(name)], host="127.0.0.1", port=0,
                      speed=self._demo_speed))
            changes[f"{name}_ws_url"] = server.ws_url
            if name == "binanceus":
                changes["binanceus_rest_url"] = server.rest_url
            log.info("demo: %s replaying %s at %s", name, DEMO_FILES[name], server.ws_url)
        return config.replace(**changes)

    async def open(self) -> None:
        """Build the app and start uvicorn; returns once it listens and :meth:`start` ran."""
        from .app import build_app

        config = self.config
        self.app = build_app(self)
        uv_config = uvicorn.Config(
            self.app, host=config.host, port=config.port, log_level=config.log_level,
            lifespan="on", access_log=False, ws_max_size=1 << 20, timeout_graceful_shutdown=3,
            # Compressing every small market-data frame costs more CPU than the rest of the send
            # path together; clients that want it can compress at the transport.
            ws_per_message_deflate=False)
        self.server = _Server(uv_config)
        sock = self._sock if self._sock is not None else self._listen(config)
        self._owned_sock = sock if self._sock is None else None
        if config.ws_send_buffer:
            # Accepted connections inherit it: a client that stops reading pins at most this
            # much kernel memory, then its bounded queue overflows and it is closed (1008).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.ws_send_buffer)
        self._server_task = asyncio.create_task(self.server.serve(sockets=[sock]), name="http")
        while not self.server.started:
            if self._server_task.done():
                self._server_task.result()   # re-raise a bind error
                raise RuntimeError("the HTTP server exited during start-up (see the log)")
            await asyncio.sleep(0.01)
        bound = self.server.servers[0].sockets[0].getsockname() if self.server.servers else None
        self.port = bound[1] if bound else config.port
        log.info("serving on http://%s:%s (WebSocket /ws; %s event loop)", config.host, self.port,
                 eventloop.running())

    @staticmethod
    def _listen(config: Config) -> socket.socket:
        try:
            family = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)[0][0]
            sock = socket.create_server((config.host, config.port), family=family, backlog=2048)
            # create_server() leaves proto 0, so asyncio does not set TCP_NODELAY on accepted
            # connections; Nagle + delayed ACK then hold every second small write (HTTP body
            # after headers, back-to-back WS frames) ~40 ms.  Linux copies it to accepted sockets.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            raise ConfigError("--port" if exc.errno == errno.EADDRINUSE else "--host",
                              f"cannot listen on {config.host}:{config.port}: "
                              f"{exc.strerror or exc}") from None

    async def close(self) -> None:
        """Stop uvicorn (closing client sockets); its lifespan then calls :meth:`stop`."""
        if self.server is not None and self._server_task is not None:
            self.server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._server_task), 15)
            except asyncio.TimeoutError:
                self.server.force_exit = True
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(self._server_task, 5)
        await self.stop()   # no-op when the lifespan already did it
        if self._owned_sock is not None:
            self._owned_sock.close()

    async def _export_connection_state(self) -> None:
        """Copy the collectors' connection state into the gauges once a second."""
        gauge, last_msg = self.metrics.exchange_connected, self.metrics.exchange_last_message
        reconnects = self.metrics.exchange_reconnects
        seen: dict[str, int] = {}
        while True:
            for name, collector in self.collectors.items():
                gauge.labels(name).set(1 if collector.connected else 0)
                if collector.last_message_ts:
                    last_msg.labels(name).set(collector.last_message_ts)
                n = collector.reconnects
                if n > seen.get(name, 0):
                    reconnects.labels(name).inc(n - seen.get(name, 0))
                    seen[name] = n
            await asyncio.sleep(1.0)

    def _mirror_sequence(self, exchange: str, symbol: str) -> int | None:
        book = self.mirror.book(exchange, symbol) if self.mirror else None
        return None if book is None else book.sequence

    def _on_opportunity(self, opp: Opportunity) -> None:
        if self.ws is not None:
            self.ws.on_opportunity(opp.symbol, opp.to_dict())
        if opp.is_open:
            self.metrics.arbitrage_opportunities.labels(
                opp.symbol, opp.buy_exchange, opp.sell_exchange).inc()
            self.metrics.arbitrage_edge.labels(opp.symbol).observe(opp.net_bps)
            self.metrics.arbitrage_detection_latency.observe(max(0.0, opp.latency_s))
        elif opp.duration_s is not None:
            self.metrics.arbitrage_duration.labels(opp.symbol).observe(opp.duration_s)
        publish = getattr(self.shm, "on_opportunity", None)
        if publish is not None:
            publish(opp)

    async def stop(self) -> None:
        """Stop the data side (the lifespan calls it); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._split is not None:
            await self._split.stop()
        else:
            await asyncio.gather(*(c.stop() for c in self.collectors.values()),
                                 return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.redis_reader is not None:
            await self.redis_reader.stop()
        if self.redis_writer is not None:
            await self.redis_writer.stop()
        if self.shm is not None:
            with contextlib.suppress(Exception):
                self.shm.close()
        for recorder in self._recorders:
            with contextlib.suppress(Exception):
                recorder.close()
        if self._replays is not None:
            await self._replays.aclose()

    async def serve_forever(self) -> None:
        """Open, run until SIGINT/SIGTERM (or the server exits), close."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.open()
            freeze_startup_heap()
            assert self._server_task is not None
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, self._server_task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            log.info("shutting down")
        finally:
            await self.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def run(config: Config) -> int:
    """Run the server until SIGINT/SIGTERM; the exit status."""
    eventloop.run(Runtime(config).serve_forever(), config.event_loop)
    return 0
