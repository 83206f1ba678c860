"""The shm publisher's recovery: overrun episodes, fresh snapshots, checksums, own books.

A mixin of :class:`~.shm.ShmPublisher` (kept apart so each file has one job).  A strategy whose
ring is full starts an overrun episode: nothing more is written to it until it drained, then a
"skipped" record and a fresh snapshot of each of its books lead; a book that is stale for a
strategy (new, after a drop, after a gap, on request) gets a snapshot (plus its checksum) in
place of its next delta.  Without a host's books (``books=None``) the publisher keeps its own.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._book import OrderBook
from ..events import BookSnapshot, BookUpdate, Gap
from ..wire import Checksum, Control, encode, encode_book
from ._subscribers import Subscriber, matches

log = logging.getLogger("alphapulse.server.shm")


class ShmRecovery:
    """Recovery half of ShmPublisher (uses its _natives, _own, counters ...)."""

    counters: dict[str, int]
    _natives: dict[tuple[str, str], str]
    _own: dict[tuple[str, str], OrderBook]
    _books_fn: Callable[[str, str], OrderBook | None] | None
    _on_drop: Callable[[int], Any] | None
    _crc_due: dict[tuple[str, str], int]
    _checksum_ns: int

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
