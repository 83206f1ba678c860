"""The shared-memory feed publisher: hub events -> one SPSC ring per attached strategy.

A hub subscriber (``on_event``) that never waits.  Strategies find it by server name: it owns
the directory ``<shm dir>/alphapulse-<name>/`` (mode 0700) with a Unix-domain control socket
(``control.sock``, 0600) and ``server.json`` (pid, start time).  The protocol, the channel
grammar and the strategy side are in :mod:`alphapulse.feed`.

Per strategy: one ring (``sub-<id>-<pid>.ring``, drop policy, 0600) that only it reads, and a
channel filter.  Each event is encoded once (:mod:`alphapulse.wire`) and written to the rings
of the strategies whose filter matches (the route per (kind, exchange, symbol) is cached).

Never waiting has a price, and it is paid by the slow strategy alone: when its ring is full the
write is dropped (the ring counts it and tells the reader, in order).  From then on each of that
strategy's books is "stale" for it: its deltas are skipped and, as soon as there is room, the
publisher writes a fresh snapshot of the book (plus a checksum record) instead, so the mirror
recovers by itself with no request.  The same happens for a new subscriber (its first
snapshots), for a book after a Gap (once the server's book is live again), and on request.

Every ``heartbeat_s`` each ring gets a Heartbeat (readers tell an idle server from a hung one;
a dead one the ring itself reports), and every ``checksum_s`` each book's subscribers get the
server book's CRC32 at the delta's sequence, so mirrors can prove they are identical.

Strategies that exit, crash or are killed close their control connection; the publisher frees
their ring at once (a periodic sweep also frees rings whose reader process is gone).  A
directory left by a killed server is cleaned on the next start with the same name.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import selectors
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._book import OrderBook
from .._ring import process_alive, process_start
from ..errors import RingError
from ..events import BookSnapshot, BookUpdate, Gap, Trade
from ..feed import CONTROL_SOCKET, RING_SUFFIX, SERVER_INFO, WILDCARD, feed_dir
from ..wire import Arbitrage, Checksum, Control, Heartbeat, encode, encode_book
from ._shm_control import ControlSocket
from ._subscribers import Subscriber, matches

log = logging.getLogger(__name__)

TICK_S = 0.05           # recovery snapshots and heartbeats are checked this often
SWEEP_S = 1.0           # dead-reader sweep
ATTACH_GRACE_S = 10.0   # a ring nobody attached to within this long is freed


class FeedNameInUse(RingError):
    """Another live server already publishes under this name in this directory."""


class ShmPublisher(ControlSocket):
    """Publishes hub events to attached strategies; see the module docstring.

    ``books(exchange, symbol)`` returns the server's live book or None while it is not live
    (``Runtime.book``); without it the publisher keeps its own mirror of the books from the
    events.  Call ``start()``, then either ``attach_loop()`` (asyncio) or ``poll()`` regularly,
    and ``close()`` at the end.  All methods must be called from one thread (the rings are
    single-producer)."""

    def __init__(self, name: str = "default", *, directory: str | os.PathLike[str] | None = None,
                 books: Callable[[str, str], OrderBook | None] | None = None,
                 heartbeat_s: float = 0.25, checksum_s: float = 1.0, max_subscribers: int = 64,
                 on_drop: Callable[[int], Any] | None = None) -> None:
        self.name = name
        self.directory = feed_dir(name, directory)
        self._books_fn = books
        self._own: dict[tuple[str, str], OrderBook] = {}
        self.heartbeat_s = heartbeat_s
        self._checksum_ns = int(checksum_s * 1e9)
        self.max_subscribers = max_subscribers
        self._on_drop = on_drop
        self._subs: dict[int, Subscriber] = {}
        self._routes: dict[tuple[str, str, str], tuple[Subscriber, ...]] = {}
        self._natives: dict[tuple[str, str], str] = {}   # every book seen -> native symbol
        self._trades_seen: set[tuple[str, str]] = set()
        self._crc_due: dict[tuple[str, str], int] = {}
        self._next_id = 0
        self._sel: selectors.BaseSelector | None = None
        self._listen: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next_heartbeat = 0.0
        self._next_sweep = 0.0
        self.counters = dict.fromkeys(("records", "dropped", "overruns", "snapshots", "attached",
                                       "detached"), 0)

    # --- lifetime --------------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory (cleaning a dead server's leftovers) and the control socket.

        Raises FeedNameInUse when a live server already uses this name here."""
        d = self.directory
        d.parent.mkdir(parents=True, exist_ok=True)
        self._clean_stale(d)
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        path = d / CONTROL_SOCKET
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(32)
        sock.setblocking(False)
        self._listen = sock
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ, None)
        info = {"pid": os.getpid(), "start": process_start(os.getpid()), "name": self.name,
                "created_ns": time.time_ns()}
        tmp = d / f".{SERVER_INFO}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, d / SERVER_INFO)
        log.info("shared-memory feed %r at %s", self.name, d)

    def _clean_stale(self, d: Path) -> None:
        if not d.exists():
            return
        try:
            info = json.loads((d / SERVER_INFO).read_text())
            pid, start = int(info["pid"]), int(info["start"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, start = 0, 0
        live = bool(pid) and pid != os.getpid() and process_alive(pid, start)
        if not live and pid != os.getpid() and (d / CONTROL_SOCKET).exists():
            # No (readable) server.json, e.g. a server between bind and writing it: ask the socket.
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                probe.settimeout(0.5)
                probe.connect(str(d / CONTROL_SOCKET))
                live = True
            except OSError:
                pass
            finally:
                probe.close()
        if live:
            raise FeedNameInUse(errno.EEXIST, f"feed name {self.name!r} is in use by the live "
                                f"server pid {pid}; choose another --name", str(d))
        # A killed server's leftovers (or an unclosed publisher of this very process): only the
        # files we make, so a wrongly pointed --shm-dir can never delete anything else.
        for entry in d.iterdir():
            if entry.name in (CONTROL_SOCKET, SERVER_INFO) or entry.name.endswith(
                    (RING_SUFFIX, ".tmp")):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
        log.info("cleaned the stale feed directory %s (server pid %s is gone)", d, pid or "?")

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Serve the control socket and the periodic work from an asyncio loop."""
        assert self._sel is not None, "start() first"
        loop = loop or asyncio.get_running_loop()
        self._loop = loop
        loop.add_reader(self._sel.fileno(), self._service, 0.0)   # epoll fd: ready when any is
        self._timer = loop.call_later(TICK_S, self._on_timer)

    def _on_timer(self) -> None:
        try:
            self.tick()
        except Exception:   # the timer must survive anything
            log.exception("shm publisher tick failed")
        if self._loop is not None:
            self._timer = self._loop.call_later(TICK_S, self._on_timer)

    def poll(self, timeout: float = 0.0) -> None:
        """For hosts without asyncio: serve control requests for up to ``timeout`` s, then tick."""
        self._service(min(timeout, TICK_S))
        self.tick()

    def close(self) -> None:
        """Tell every strategy goodbye, close and unlink the rings, remove the directory."""
        if self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sel.fileno())   # type: ignore[union-attr]
            self._loop = None
        now = time.time_ns()
        for sub in list(self._subs.values()):
            with contextlib.suppress(Exception):
                sub.writer.write(encode(Control("bye", "server shutting down", now)))
            self._remove(sub, "server shutting down")
        if self._sel is not None:
            for key in list(self._sel.get_map().values()):
                with contextlib.suppress(Exception):
                    key.fileobj.close()   # type: ignore[union-attr]
            self._sel.close()
            self._sel = None
        self._listen = None
        with contextlib.suppress(OSError):
            info = json.loads((self.directory / SERVER_INFO).read_text())
            if info.get("pid") == os.getpid():
                shutil.rmtree(self.directory, ignore_errors=True)

    # --- the hot path ----------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Hub subscriber: write ``event`` to each matching strategy's ring; never blocks."""
        cls = type(event)
        if cls is BookUpdate:
            key = (event.exchange, event.symbol)
            if key not in self._natives:
                self._new_book(key, event.native_symbol)
            if self._books_fn is None:
                self._mirror(event)
            targets = self._routes.get(("book",) + key)
            if targets is None:
                targets = self._route(("book",) + key)
            if not targets:
                return
            now = time.time_ns()
            data = encode(event, now)
            seq = event.delta.sequence
            for sub in targets:
                if sub.stale:   # something special for this strategy: new, overrun, gap
                    if key in sub.stale:
                        # A fresh snapshot instead: the server's book is already at ``seq``,
                        # so it covers this delta, which is skipped either way.
                        if not ((not sub.overrun or self._resume(sub, now)) and (
                                key not in sub.stale or self._recover(
                                    sub, key, event.ts_event, event.ts_recv, now, seq))):
                            self._skip(sub)
                        continue
                    if sub.overrun and not self._resume(sub, now):
                        self._skip(sub)
                        continue
                if sub.writer.write(data):
                    sub.records += 1
                else:
                    self._dropped(sub, now)
            if now >= self._crc_due.get(key, 0):
                self._send_checksum(key, seq, targets, now)
        elif cls is Trade:
            key = (event.exchange, event.symbol)
            if key not in self._trades_seen:
                self._trades_seen.add(key)
            targets = self._routes.get(("trades",) + key)
            if targets is None:
                targets = self._route(("trades",) + key)
            if targets:
                self._write_all(targets, encode(event, time.time_ns()))
        elif cls is BookSnapshot:
            self._on_snapshot(event)
        elif cls is Gap:
            self._on_gap(event)

    def on_opportunity(self, opp: Any) -> None:
        """Arbitrage opportunities (opened/closed) to ``arbitrage:<symbol>`` subscribers."""
        key = ("arbitrage", WILDCARD, opp.symbol)
        targets = self._routes.get(key)
        if targets is None:
            targets = self._route(key)
        if targets:
            record = Arbitrage(opp.symbol, opp.to_dict(), int(opp.detected_ns),
                               int(opp.trigger_ts_recv))
            self._write_all(targets, encode(record, time.time_ns()))

    def _write_all(self, targets: tuple[Subscriber, ...], data: bytes) -> None:
        now = 0
        for sub in targets:
            if sub.overrun:
                now = now or time.time_ns()
                if not self._resume(sub, now):
                    self._skip(sub)
                    continue
            if sub.writer.write(data):
                sub.records += 1
            else:
                self._dropped(sub, now or time.time_ns())

    def _new_book(self, key: tuple[str, str], native: str) -> None:
        """A book first seen through a delta: its subscribers need a snapshot first."""
        self._natives[key] = native
        for sub in self._route(("book",) + key):
            sub.stale.add(key)

    def _on_snapshot(self, event: BookSnapshot) -> None:
        key = (event.exchange, event.symbol)
        self._natives[key] = event.native_symbol
        if self._books_fn is None:
            self._mirror(event)
        targets = self._routes.get(("book",) + key)
        if targets is None:
            targets = self._route(("book",) + key)
        if not targets:
            return
        now = time.time_ns()
        data = encode(event, now)
        for sub in targets:
            if sub.overrun and not self._resume(sub, now):
                self._skip(sub)
            elif sub.writer.write(data):
                sub.records += 1
                sub.stale.discard(key)
            else:
                self._dropped(sub, now)
        self._send_checksum(key, event.delta.sequence, targets, now)

    def _on_gap(self, event: Gap) -> None:
        if self._books_fn is None:
            self._mirror(event)
        if event.symbol:
            affected = [(event.exchange, event.symbol)]
        else:
            affected = [k for k in self._natives if k[0] == event.exchange]
        targets = self._route(("gap", event.exchange, event.symbol))
        # Everyone's copy of these books is suspect now: a fresh snapshot follows as soon as the
        # server's book is live again (at once if the gap did not touch the book).
        for key in affected:
            for sub in self._route(("book",) + key):
                sub.stale.add(key)
        if targets:
            self._write_all(targets, encode(event, time.time_ns()))

    def _dropped(self, sub: Subscriber, now: int) -> None:
        """A write to ``sub``'s full ring failed (the ring counted it and will tell the reader).

        Starts an overrun episode: nothing more is written to this strategy (each record is
        counted as skipped) until its reader has drained the ring to a quarter; then a
        "skipped" control record and fresh snapshots of all its books go first.  One episode
        thus reaches the reader as one RingOverrun followed by that count, and a strategy
        that stays too slow is not fed a trickle of records between drops."""
        self.counters["dropped"] += 1
        if self._on_drop is not None:
            self._on_drop(1)
        if not sub.overrun:
            sub.overrun = True
            sub.skipped = 0
            sub.overruns += 1
            self.counters["overruns"] += 1
            sub.stale.update(k for k in self._natives if matches(sub, "book", *k))
            log.warning("strategy %d (pid %d) fell behind: records dropped, it will be "
                        "re-snapshotted", sub.id, sub.pid)

    def _skip(self, sub: Subscriber) -> None:
        if sub.overrun:
            sub.skipped += 1
            self.counters["dropped"] += 1
            if self._on_drop is not None:
                self._on_drop(1)

    def _resume(self, sub: Subscriber, now: int) -> bool:
        """End ``sub``'s overrun episode if its ring has drained enough; True if it ended."""
        w = sub.writer
        if w.backlog > w.capacity // 4:
            return False
        if not w.write(encode(Control("skipped", str(sub.skipped), now))):
            return False
        sub.records += 1
        sub.overrun = False
        for key in list(sub.stale):
            self._recover(sub, key, 0, now, now)
        return True

    def _recover(self, sub: Subscriber, key: tuple[str, str], ts_event: int, ts_recv: int,
                 now: int, sequence: int | None = None) -> bool:
        """Write a fresh snapshot of ``key`` to ``sub`` if the book is live and there is room."""
        book = self._book(*key)
        if book is None or (sequence is not None and book.sequence != sequence):
            return False
        delta = book.snapshot_delta()
        data = encode_book("snapshot", key[0], key[1], delta, ts_event, ts_recv, now,
                           self._natives.get(key, ""))
        crc = encode(Checksum(key[0], key[1], delta.sequence, book.checksum(), now))
        w = sub.writer
        # Room for both, with slack for the wrap padding: a snapshot that does not fit would
        # only count one more drop and tell the reader of an overrun that did not happen.
        if w.capacity - w.backlog < 2 * (len(data) + len(crc)) + 64:
            return False
        if len(data) > w.max_record:
            log.error("snapshot of %s:%s (%d bytes) exceeds the ring's largest record for "
                      "subscriber %d", *key, len(data), sub.id)
            return False
        if not (w.write(data) and w.write(crc)):   # cannot happen after the room check, but
            self._dropped(sub, now)                # a silent drop would strand the reader
            return False
        sub.records += 2
        sub.snapshots += 1
        self.counters["snapshots"] += 1
        sub.stale.discard(key)
        return True

    def _send_checksum(self, key: tuple[str, str], sequence: int,
                       targets: tuple[Subscriber, ...], now: int) -> None:
        self._crc_due[key] = now + self._checksum_ns
        book = self._book(*key)
        if book is None or book.sequence != sequence:
            return
        data = encode(Checksum(key[0], key[1], sequence, book.checksum(), now))
        for sub in targets:
            if not sub.overrun and key not in sub.stale:
                w = sub.writer
                if w.capacity - w.backlog > 4 * len(data):
                    if w.write(data):
                        sub.records += 1
                    else:
                        self._dropped(sub, now)

    # --- books -----------------------------------------------------------------------------

    def _book(self, exchange: str, symbol: str) -> OrderBook | None:
        if self._books_fn is not None:
            return self._books_fn(exchange, symbol)
        return self._own.get((exchange, symbol))

    def _mirror(self, event: Any) -> None:
        """Own books, when the host gave us none (same rules as the server's BookMirror)."""
        cls = type(event)
        if cls is BookUpdate:
            key = (event.exchange, event.symbol)
            self._natives.setdefault(key, event.native_symbol)
            book = self._own.get(key)
            if book is not None:
                try:
                    book.apply_delta(event.delta)
                except ValueError:
                    del self._own[key]
        elif cls is BookSnapshot:
            d = event.delta
            book = OrderBook(event.symbol, d.price_precision, d.size_precision,
                             exchange=event.exchange)
            book.apply_delta(d)
            self._own[(event.exchange, event.symbol)] = book
        elif cls is Gap:
            for key in [k for k in self._own if k[0] == event.exchange
                        and (not event.symbol or k[1] == event.symbol)]:
                del self._own[key]

    # --- routing ---------------------------------------------------------------------------

    def _route(self, key: tuple[str, str, str]) -> tuple[Subscriber, ...]:
        kind, exchange, symbol = key
        targets = tuple(s for s in self._subs.values() if matches(s, kind, exchange, symbol))
        self._routes[key] = targets
        return targets

    # --- periodic work ---------------------------------------------------------------------

    def tick(self) -> None:
        """Recovery snapshots for stale books, heartbeats, and the dead-reader sweep."""
        now = time.time_ns()
        mono = time.monotonic()
        beat = mono >= self._next_heartbeat
        if beat:
            self._next_heartbeat = mono + self.heartbeat_s
        for sub in list(self._subs.values()):
            if sub.overrun and not self._resume(sub, now):
                continue   # no heartbeat either: the reader has plenty to read
            for key in list(sub.stale):
                self._recover(sub, key, 0, now, now)
            if beat:
                w = sub.writer
                if w.capacity - w.backlog > 256:
                    if not w.write(encode(Heartbeat(os.getpid(), w.dropped, now))):
                        self._dropped(sub, now)
        if mono >= self._next_sweep:
            self._next_sweep = mono + SWEEP_S
            for sub in list(self._subs.values()):
                if sub.writer.reader_attached:
                    sub.reader_seen = True
                elif sub.reader_seen or mono - sub.created > ATTACH_GRACE_S:
                    self._remove(sub, "reader gone")

    def _remove(self, sub: Subscriber, why: str) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        self._routes.clear()
        self.counters["detached"] += 1
        with contextlib.suppress(Exception):
            sub.writer.close()
        with contextlib.suppress(Exception):
            sub.writer.unlink()
        log.info("strategy %d (pid %d) removed: %s", sub.id, sub.pid, why)

    # --- introspection ---------------------------------------------------------------------

    def available(self) -> list[str]:
        """Channels with data right now."""
        out = [f"book:{e}:{s}" for e, s in self._natives]
        out += [f"trades:{e}:{s}" for e, s in self._trades_seen]
        return sorted(out)

    def stats(self) -> dict[str, Any]:
        """Counters and one entry per attached strategy (for /health and metrics)."""
        return {**self.counters, "directory": str(self.directory),
                "subscribers": [sub.describe() for sub in self._subs.values()]}


def make_publisher(runtime: Any, config: Any) -> ShmPublisher | None:
    """The runtime's hook: a started publisher on the running loop, fed the runtime's books.

    Returns None (and logs why) when another live server already uses the feed name here:
    the service still runs, without a shared-memory feed."""
    metrics = getattr(runtime, "metrics", None)
    counter = getattr(metrics, "ring_overruns", None)
    publisher = ShmPublisher(config.name, directory=config.shm_dir, books=runtime.book,
                             on_drop=counter.inc if counter is not None else None)
    try:
        publisher.start()
    except FeedNameInUse as exc:
        log.error("shared-memory feed disabled: %s", exc)
        return None
    with contextlib.suppress(RuntimeError):   # no running loop: the host calls poll()
        publisher.attach_loop(asyncio.get_running_loop())
    return publisher
