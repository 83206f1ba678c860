"""Records -> events, and the strategy's mirror books with their recovery state.

One :class:`Mirrors` per attached feed.  :meth:`Mirrors.handle` turns one ring record into the
event the strategy sees (or None for bookkeeping records), applying book deltas to the mirror
first; a delta that does not continue its mirror, a Gap, or a checksum that differs from the
server's marks the book stale, and a stale book waits for the fresh snapshot the server sends
(asked for by ``resync``, the feed's control request).
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .._book import OrderBook
from ..errors import SequenceError
from ..events import BookSnapshot, BookUpdate, Gap, Trade
from ..wire import Arbitrage, Checksum, Control, Heartbeat, decode

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Overrun:
    """This strategy fell behind: the server dropped ``missed`` records for it.

    Every mirror in ``books`` is out of sync until its fresh snapshot, which the server sends
    by itself (``feed.book()`` returns None meanwhile); trades in the gap are lost."""

    missed: int
    books: tuple[Key, ...]
    ts: int


@dataclass(frozen=True, slots=True)
class Resync:
    """One mirror left sync (``reason``: "sequence", "checksum", "gap"); a fresh snapshot follows."""

    exchange: str
    symbol: str
    reason: str
    detail: str
    ts: int


FeedEvent = Trade | BookSnapshot | BookUpdate | Gap | Arbitrage | Overrun | Resync

STATS = ("records", "trades", "snapshots", "updates", "skipped", "gaps", "arbitrage",
         "heartbeats", "overruns", "missed", "resyncs", "sequence_errors", "checksum_ok",
         "checksum_failed")


class Mirrors:
    """The mirror books of one feed, the records -> events step, and the feed's counters.

    ``resync(key)`` asks the server for a fresh snapshot of one book.  ``pending`` holds notices
    produced outside the record being handled (a failed checksum); ``missed`` accumulates the
    records the server skipped on purpose after an overrun (its "skipped" control record)."""

    def __init__(self, resync: Callable[[Key], object], *, heartbeats: bool = False) -> None:
        self._request_resync = resync
        self._yield_heartbeats = heartbeats
        self.books: dict[Key, OrderBook] = {}
        self.stale: set[Key] = set()
        self.pending: collections.deque[FeedEvent] = collections.deque()
        self.missed = 0
        self.last_heartbeat_ns = time.time_ns()
        self.closed_reason: str | None = None
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)

    def book(self, key: Key) -> OrderBook | None:
        return None if key in self.stale else self.books.get(key)

    def mark_stale(self, keys: Iterable[Key]) -> None:
        self.stale.update(k for k in keys if k in self.books)

    def handle(self, record: bytes) -> FeedEvent | None:
        """The event for one record (mirror already updated), or None (nothing to show)."""
        self.stats["records"] += 1
        event = decode(record)
        cls = type(event)
        if cls is BookUpdate:
            key = (event.exchange, event.symbol)
            book = self.books.get(key)
            if book is None or key in self.stale:
                self.stats["skipped"] += 1     # waiting for this book's snapshot
                return None
            try:
                book.apply_delta(event.delta)
            except SequenceError as exc:
                self.stats["sequence_errors"] += 1
                return self.resync(key, "sequence", str(exc))
            self.stats["updates"] += 1
            return event
        if cls is Trade:
            self.stats["trades"] += 1
            return event
        if cls is BookSnapshot:
            self._snapshot(event)
            return event
        if cls is Checksum:
            self._check(event)
            return None
        if cls is Heartbeat:
            self.stats["heartbeats"] += 1
            self.last_heartbeat_ns = event.ts_pub
            return event if self._yield_heartbeats else None
        if cls is Gap:
            self.stats["gaps"] += 1
            # The server's book is being rebuilt; the server sends a fresh snapshot once it is
            # live again (at once if the gap did not concern the book, e.g. missed trades).
            if event.symbol:
                self.mark_stale([(event.exchange, event.symbol)])
            else:
                self.mark_stale([k for k in self.books if k[0] == event.exchange])
            return event
        if cls is Arbitrage:
            self.stats["arbitrage"] += 1
            return event
        if cls is Control:
            if event.kind == "skipped":   # follows an overrun notice: what else we missed
                self.missed += int(event.detail or 0)
            elif event.kind == "bye":
                self.closed_reason = event.detail or "server shut down"
        return None

    def _snapshot(self, event: BookSnapshot) -> None:
        key = (event.exchange, event.symbol)
        delta = event.delta
        book = self.books.get(key)
        if (book is None or book.price_precision != delta.price_precision
                or book.size_precision != delta.size_precision):
            book = OrderBook(event.symbol, delta.price_precision, delta.size_precision,
                             exchange=event.exchange)
            self.books[key] = book
        book.apply_delta(delta)   # a snapshot delta replaces the whole book
        self.stale.discard(key)
        self.stats["snapshots"] += 1

    def _check(self, event: Checksum) -> None:
        key = (event.exchange, event.symbol)
        book = self.books.get(key)
        if book is None or key in self.stale or book.sequence != event.sequence:
            return
        if book.checksum() == event.checksum:
            self.stats["checksum_ok"] += 1
            return
        self.stats["checksum_failed"] += 1
        self.pending.append(self.resync(
            key, "checksum", f"mirror CRC32 differs from the server's {event.checksum} "
                             f"at sequence {event.sequence}"))

    def resync(self, key: Key, reason: str, detail: str) -> Resync:
        """Mark ``key`` stale, ask the server for a snapshot; the notice for the strategy."""
        self.stale.add(key)
        self.stats["resyncs"] += 1
        self._request_resync(key)
        return Resync(key[0], key[1], reason, detail, time.time_ns())

    def overrun(self, missed: int) -> None:
        """The ring said the server dropped ``missed`` records: every mirror is stale now."""
        self.missed += missed
        self.stale.update(self.books)

    def take_overrun(self) -> Overrun | None:
        """The Overrun notice for what was missed since the last one, if anything was."""
        missed = self.missed
        if not missed:
            return None
        self.missed = 0
        self.stats["overruns"] += 1
        self.stats["missed"] += missed
        return Overrun(missed, tuple(self.books), time.time_ns())
