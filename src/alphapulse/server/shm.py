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
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from .._book import OrderBook
from ..errors import FeedNameInUse
from ..events import BookSnapshot, BookUpdate, Gap, Trade
from ..feed.protocol import WILDCARD, feed_dir
from ..wire import Arbitrage, encode
from ._shm_control import ControlSocket
from ._shm_lifetime import ShmLifetime
from ._shm_recovery import ShmRecovery
from ._subscribers import Subscriber, matches

__all__ = ["ShmPublisher", "FeedNameInUse", "make_publisher"]

log = logging.getLogger(__name__)


class ShmPublisher(ShmLifetime, ShmRecovery, ControlSocket):
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
        # (kind, exchange, symbol) -> subscribers; book deltas look theirs up by the bare
        # (exchange, symbol) (one tuple less per delta).  Cleared when subscriptions change.
        self._routes: dict[tuple[str, ...], tuple[Subscriber, ...]] = {}
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


    # --- the hot path ----------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Hub subscriber: write ``event`` to each matching strategy's ring; never blocks."""
        cls = type(event)
        if cls is BookUpdate:
            key = (event.exchange, event.symbol)
            targets = self._routes.get(key)
            if targets is None:
                targets = self._delta_route(key, event.native_symbol)
            if self._books_fn is None:
                self._mirror(event)
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

    def _delta_route(self, key: tuple[str, str], native: str) -> tuple[Subscriber, ...]:
        """The book's route, also cached under the bare (exchange, symbol): the deltas' key."""
        if key not in self._natives:
            self._new_book(key, native)
        targets = self._routes[key] = self._route(("book",) + key)
        return targets

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

    # --- routing ---------------------------------------------------------------------------

    def _route(self, key: tuple[str, str, str]) -> tuple[Subscriber, ...]:
        kind, exchange, symbol = key
        targets = tuple(s for s in self._subs.values() if matches(s, kind, exchange, symbol))
        self._routes[key] = targets
        return targets

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
