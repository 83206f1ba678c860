"""``--processes 2``: the collectors parse in a child process; this process serves.

The two processes are joined by one shared-memory ring (``alphapulse.ring``, SPSC): the child
is its only writer, the server its only reader.  Each record is one event:

    b"T" + orjson([exchange, symbol, native, price, size, side, trade_id, ts_event, ts_recv])
    b"S" / b"U" + u16 meta length + orjson([exchange, symbol, native, ts_event, ts_recv])
                + Delta.encode()                         (BookSnapshot / BookUpdate)
    b"G" + orjson(Gap fields)      b"R" + orjson(Rejected fields)
    b"H" + orjson({exchange: collector status})          (5 times a second: health, metrics)

The ring uses the drop policy: the parser never waits for the server.  If the server falls
behind, the reader is told exactly how many records it missed; the server then publishes a
``Gap(reason="ring_overrun")`` for every book and asks the child (over a pipe) for fresh
snapshots of all its live books, which arrive in order behind whatever is already in the ring.
The server rebuilds its books from the events (:class:`~.hub.BookMirror`), which is also what
``--source redis`` does.  ``ts_recv`` travels unchanged, so the exported processing latency
includes the ring hop.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from .._book import Delta
from ..errors import ProducerGone, RingOverrun
from ..events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from .. import eventloop
from .config import Config
from .gcpause import freeze_startup_heap

log = logging.getLogger(__name__)

RING_CAPACITY = 1 << 24
STATUS_INTERVAL_S = 0.2
_META = struct.Struct("<H")


# --- the record format ------------------------------------------------------------------------

def encode_event(event: Any) -> bytes:
    kind = type(event)
    if kind is BookUpdate or kind is BookSnapshot:
        meta = orjson.dumps([event.exchange, event.symbol, event.native_symbol, event.ts_event,
                             event.ts_recv])
        tag = b"U" if kind is BookUpdate else b"S"
        return b"".join((tag, _META.pack(len(meta)), meta, event.delta.encode()))
    if kind is Trade:
        return b"T" + orjson.dumps([event.exchange, event.symbol, event.native_symbol,
                                    event.price, event.size, event.side, event.trade_id,
                                    event.ts_event, event.ts_recv])
    if kind is Gap:
        return b"G" + orjson.dumps([event.exchange, event.symbol, event.reason, event.detail,
                                    event.missed, event.ts_recv])
    if kind is Rejected:
        return b"R" + orjson.dumps([event.exchange, event.reason, event.detail, event.ts_recv])
    raise TypeError(f"not an event: {event!r}")


def decode_event(record: bytes | memoryview) -> Any:
    """The event a record stands for; a dict for a status record."""
    tag = record[0]
    if tag in (0x55, 0x53):   # U, S
        (n,) = _META.unpack_from(record, 1)
        exchange, symbol, native, ts_event, ts_recv = orjson.loads(record[3:3 + n])
        delta = Delta.decode(bytes(record[3 + n:]))
        cls = BookUpdate if tag == 0x55 else BookSnapshot
        return cls(exchange, symbol, native, delta, ts_event, ts_recv)
    body = orjson.loads(record[1:])
    if tag == 0x54:   # T
        return Trade(*body)
    if tag == 0x47:   # G
        return Gap(*body)
    if tag == 0x52:   # R
        return Rejected(*body)
    if tag == 0x48:   # H
        return body
    raise ValueError(f"unknown record tag {tag!r}")


# --- the child: collectors -> ring ----------------------------------------------------------

def _child_main(config: Config, ring_path: str, control: Connection) -> None:
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s collectors[%(process)d] %(name)s: "
                               "%(message)s")
    eventloop.run(_child(config, ring_path, control), config.event_loop)


async def _child(config: Config, ring_path: str, control: Connection) -> None:
    from .. import ring
    from ..exchanges import get_collector

    writer = ring.create(ring_path, RING_CAPACITY, policy="drop")
    write = writer.write
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def sink(event: Any) -> None:
        write(encode_event(event))   # drop policy: never waits; the reader is told of losses

    recorders = []
    collectors = {}
    if config.record_dir is not None:
        from ..capture import Recorder
        config.record_dir.mkdir(parents=True, exist_ok=True)
    for name in config.exchanges:
        recorder = None
        if config.record_dir is not None:
            recorder = Recorder(config.record_dir, name)
            recorders.append(recorder)
        kwargs: dict[str, Any] = {"stale_after": {}} if config.demo else {}
        collectors[name] = get_collector(name)(
            list(config.symbols), url=config.ws_url(name), rest_url=config.rest_url(name),
            sink=sink, recorder=recorder, **kwargs)
    tasks = [asyncio.create_task(c.run()) for c in collectors.values()]
    freeze_startup_heap()        # see gcpause: full collections would re-walk start-up objects

    def on_control() -> None:
        try:
            message = control.recv()
        except (EOFError, OSError):
            stop.set()
            return
        if message == "stop":
            stop.set()
        elif message == "snapshots":
            # After a ring overrun: every live book again, in order behind what is queued.
            now = time.time_ns()
            for c in collectors.values():
                for symbol, book in c.books.items():
                    if c.state(symbol) == "live":
                        native = c.parser.natives.get(symbol, symbol)
                        sink(BookSnapshot(c.name, symbol, native, book.snapshot_delta(), now, now))

    loop.add_reader(control.fileno(), on_control)

    async def status() -> None:
        while True:
            report = {name: {"stats": c.stats, "states": {s: c.state(s) for s in config.symbols}}
                      for name, c in collectors.items()}
            write(b"H" + orjson.dumps(report, default=str))
            await asyncio.sleep(STATUS_INTERVAL_S)

    status_task = asyncio.create_task(status())
    try:
        await stop.wait()
    finally:
        loop.remove_reader(control.fileno())
        status_task.cancel()
        await asyncio.gather(*(c.stop() for c in collectors.values()), return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, status_task, return_exceptions=True)
        for recorder in recorders:
            recorder.close()
        writer.close()


# --- the server side: ring -> hub -----------------------------------------------------------

class RemoteCollector:
    """What the server knows of a collector running in the child (health, metrics)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats: dict[str, Any] = {"connected": False, "last_message_ts": 0.0,
                                      "reconnects": 0, "rejected": {}}
        self._states: dict[str, str] = {}

    @property
    def connected(self) -> bool:
        return bool(self.stats.get("connected"))

    @property
    def last_message_ts(self) -> float:
        return float(self.stats.get("last_message_ts") or 0.0)

    @property
    def reconnects(self) -> int:
        return int(self.stats.get("reconnects") or 0)

    def state(self, symbol: str) -> str:
        return self._states.get(symbol, "syncing")

    def update(self, report: dict[str, Any]) -> None:
        self.stats = report.get("stats", self.stats)
        self._states = report.get("states", self._states)


class CollectorProcess:
    """Starts the child, reads its ring into ``sink``, stops it cleanly."""

    def __init__(self, config: Config, sink: Callable[[Any], None], *, ring_dir: Path,
                 metrics: Any = None) -> None:
        self.config = config
        self._sink = sink
        self._metrics = metrics
        self.ring_path = str(ring_dir / f"alphapulse-{config.name}-collectors-{os.getpid()}.ring")
        self.collectors = {name: RemoteCollector(name) for name in config.exchanges}
        self._process: multiprocessing.process.BaseProcess | None = None
        self._control: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.stats = {"records": 0, "overruns": 0, "missed": 0}
        self._stopping = False

    async def start(self) -> None:
        from .. import ring

        ctx = multiprocessing.get_context("spawn")
        self._control, child_end = ctx.Pipe()
        self._process = ctx.Process(target=_child_main, name="alphapulse-collectors",
                                    args=(self.config, self.ring_path, child_end), daemon=True)
        self._process.start()
        child_end.close()
        reader = await asyncio.to_thread(ring.attach, self.ring_path, timeout=30.0)
        self._task = asyncio.create_task(self._read(reader), name="collector-ring")

    async def _read(self, reader: Any) -> None:
        sink, decode = self._sink, decode_event
        try:
            while True:
                try:
                    records = reader.read_many(512)
                    if not records:
                        record = reader.read()    # raises a pending overrun notice
                        if record is None:
                            await asyncio.to_thread(reader.wait, 0.05)
                            continue
                        records = [record]
                except RingOverrun as exc:
                    self._overrun(exc.missed)
                    continue
                for record in records:
                    event = decode(record)
                    if type(event) is dict:
                        for name, report in event.items():
                            remote = self.collectors.get(name)
                            if remote is not None:
                                remote.update(report)
                    else:
                        sink(event)
                self.stats["records"] += len(records)
                if len(records) == 512:
                    await asyncio.sleep(0)   # let the API and the WebSocket senders run
        except ProducerGone:
            if not self._stopping:
                # Health must not keep showing the child's last "connected" report.
                log.error("the collector process died; market data has stopped")
                for remote in self.collectors.values():
                    remote.stats = {**remote.stats, "connected": False}
        finally:
            reader.close()

    def _overrun(self, missed: int) -> None:
        self.stats["overruns"] += 1
        self.stats["missed"] += missed
        if self._metrics is not None:
            self._metrics.ring_overruns.inc(missed)
        now = time.time_ns()
        for name in self.config.exchanges:
            for symbol in self.config.symbols:
                self._sink(Gap(name, symbol, "ring_overrun",
                               f"server fell behind the collector process: {missed} lost", -1, now))
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send("snapshots")

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send("stop")
        if self._process is not None:
            await asyncio.to_thread(self._process.join, timeout)
            if self._process.is_alive():
                self._process.terminate()
                await asyncio.to_thread(self._process.join, 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._control is not None:
            self._control.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ring_path)
