"""The hub: every Event from the collectors (or from Redis, or from the collector process's ring)
goes through :attr:`Hub.publish`, which hands it to each subscriber in turn.

Subscribers are objects with ``on_event(event)``.  They run synchronously on the event loop,
in the collector's read loop, so none of them may block or await: the trade store appends, the
WebSocket fan-out enqueues into bounded per-client queues, the shm publisher writes to rings
with the drop policy, the Redis writer appends to a bounded buffer.  A subscriber that raises is
logged (once per exception type) and counted; it never stops the others or the collector.

Processing latency (frame receipt to publication) is recorded by the metrics, the last
subscriber the server registers, so it covers every other subscriber's work.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .._book import OrderBook
from ..errors import SequenceError
from ..events import BookSnapshot, BookUpdate, Gap
from ._dispatch import Dispatch

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    def on_event(self, event: Any) -> None: ...


class Hub:
    """Fans every event out to the subscribers, in registration order; never blocks."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, tuple[type, ...] | None]] = []
        self.errors: dict[str, int] = {}
        # The per-event loop is compiled (``_dispatch``); it keeps, per event class, the
        # callbacks that want it, built on first use by ``_route``.
        self._dispatch = Dispatch(self._route, self._failed)
        self._routes = self._dispatch.routes
        #: The collectors' sink: hand an event to every subscriber that wants it.
        self.publish: Callable[[Any], None] = self._dispatch.publish

    def subscribe(self, subscriber: Subscriber, types: tuple[type, ...] | None = None) -> None:
        """Add a subscriber; it sees every event published from now on (only instances of
        ``types``, if given: a call saved per event it would ignore anyway)."""
        self._subscribers.append((subscriber, types))
        self._routes.clear()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = [(s, t) for s, t in self._subscribers if s is not subscriber]
        self._routes.clear()

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return tuple(s for s, _ in self._subscribers)

    def _route(self, cls: type) -> tuple[Callable[[Any], None], ...]:
        callbacks = self._routes[cls] = tuple(
            s.on_event for s, types in self._subscribers if types is None or issubclass(cls, types))
        return callbacks

    def _failed(self, callback: Callable[[Any], None], exc: Exception) -> None:
        name = f"{type(callback.__self__).__name__}:{type(exc).__name__}"  # type: ignore[attr-defined]
        seen = self.errors.get(name, 0)
        self.errors[name] = seen + 1
        if seen == 0:
            log.error("hub subscriber %s failed (logged once per kind)", name, exc_info=exc)


class BookMirror:
    """Books rebuilt from BookSnapshot/BookUpdate events, for processes that have no collector.

    Used with ``--source redis`` and in the serving process of the two-process mode: the books
    the API and the WebSocket snapshots read.  A delta that does not continue its book marks the
    book stale (``book()`` returns None) until the next snapshot, which the source always sends
    after a gap.
    """

    def __init__(self) -> None:
        self._books: dict[tuple[str, str], OrderBook] = {}
        self.sequence_errors = 0

    def on_event(self, event: Any) -> None:
        if isinstance(event, BookUpdate):
            book = self._books.get((event.exchange, event.symbol))
            if book is None:
                return
            try:
                book.apply_delta(event.delta)
            except SequenceError:
                self.sequence_errors += 1
                del self._books[(event.exchange, event.symbol)]
        elif isinstance(event, BookSnapshot):
            delta = event.delta
            book = OrderBook(event.symbol, delta.price_precision, delta.size_precision,
                             exchange=event.exchange)
            book.apply_delta(delta)
            self._books[(event.exchange, event.symbol)] = book
        elif isinstance(event, Gap):
            if event.symbol:
                self._books.pop((event.exchange, event.symbol), None)
            else:
                for key in [k for k in self._books if k[0] == event.exchange]:
                    del self._books[key]

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        return self._books.get((exchange, symbol))

    def keys(self) -> Iterable[tuple[str, str]]:
        return self._books.keys()
