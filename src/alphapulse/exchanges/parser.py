"""The sans-IO half of a collector: :class:`FeedParser` (frames in, books and events out,
resyncs requested) and its small helpers.  No sockets, no clocks, no asyncio: the live read
loop (``base.MarketDataCollector``), ``alphapulse verify`` and the tests drive the same class.
How to implement an exchange: see ``exchanges/base.py``'s docstring.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import orjson

from .._book import OrderBook
from ..errors import BookError, ProtocolError
from ..events import BookSnapshot, BookUpdate, Event, Gap, Rejected, new_trade
from ..symbols import Instrument, from_native, instrument

HOTPATH_MISSING = ("alphapulse.exchanges._hotpath is not built: run pip install . or "
                   "python setup.py build_ext --inplace")

# STYLE: a missing compiled module is a loud error, never a silent slow fallback.  The pure
# Python equivalents stay only as explicit test oracles (``_book_update_maker(compiled=False)``,
# ``kraken._apply_v2 = None``, ``coinbase._scan_l2 = None``).
try:
    from ._hotpath import new_book_event
except ImportError as exc:
    raise ImportError(HOTPATH_MISSING) from exc

__all__ = ["HOTPATH_MISSING", "LIVE", "RESYNCING", "SYNCING", "FeedParser", "LogLimiter",
           "make_book_update"]

log = logging.getLogger("alphapulse.exchanges")

SYNCING, LIVE, RESYNCING = "syncing", "live", "resyncing"

# Everything a hostile frame can make a parser raise (JSONDecodeError is a ValueError).
_FRAME_ERRORS = (ProtocolError, BookError, KeyError, TypeError, IndexError, AttributeError,
                 ValueError, RecursionError)


def _book_update_maker(compiled: bool = True) -> Callable[..., BookUpdate]:
    """``BookUpdate(...)`` for the hot path, three times as fast.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` by name;
    setting the same slots directly (from C in ``_hotpath``) builds an identical object for
    less.  Falls back to the constructor if the event's fields ever change.

    ``compiled=False`` builds the pure-Python equivalent (through the slot descriptors): an
    explicit oracle for tests, never a silent substitute; the compiled module is imported at
    package import (see :data:`HOTPATH_MISSING`).
    """
    names = ("exchange", "symbol", "native_symbol", "delta", "ts_event", "ts_recv")
    if tuple(f.name for f in dataclasses.fields(BookUpdate)) != names:
        return BookUpdate
    if compiled:
        return functools.partial(new_book_event, BookUpdate)
    new = object.__new__
    s_ex, s_sym, s_nat, s_delta, s_te, s_tr = (
        getattr(BookUpdate, n).__set__ for n in names)

    def make(exchange: str, symbol: str, native: str, delta: Any, ts_event: int,
             ts_recv: int) -> BookUpdate:
        e = new(BookUpdate)
        s_ex(e, exchange)
        s_sym(e, symbol)
        s_nat(e, native)
        s_delta(e, delta)
        s_te(e, ts_event)
        s_tr(e, ts_recv)
        return e

    return make


make_book_update = _book_update_maker()


def _discard(event: Event) -> None:
    pass


class LogLimiter:
    """Log the first occurrence of each reason at once, then at most one summary per interval."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, reason: str, message: str) -> None:
        now = time.monotonic()
        due = self._next.get(reason)
        if due is not None and now < due:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        more = self._suppressed.pop(reason, 0)
        suffix = f" ({more} more since last report)" if more else ""
        self._logger.warning("%s: %s%s", reason, message[:300], suffix)
        self._next[reason] = now + self._interval


class FeedParser:
    """Sans-IO core of a collector: frames in, books updated, events out, resyncs requested.

    The live read loop, ``alphapulse verify`` and the tests drive the same instance type.
    ``symbols=None`` accepts every symbol the feed mentions (verify); otherwise frames about
    other symbols are rejected as ``unknown_symbol``.
    """

    exchange: ClassVar[str] = ""
    check_crossed: ClassVar[bool] = True

    def __init__(self, symbols: Iterable[str] | None = None, *,
                 sink: Callable[[Event], None] | None = None, depth: int = 0) -> None:
        self.sink: Callable[[Event], None] = sink or _discard
        self.symbols: tuple[str, ...] | None = (
            None if symbols is None else tuple(self.instrument(s).symbol for s in symbols))
        self.depth = depth
        self.books: dict[str, OrderBook] = {}
        self.natives: dict[str, str] = {}                 # normalised -> native symbol
        # channel -> frames seen; the collector's watchdog samples these counters, so the
        # parser never reads a clock (a counter bump is cheaper than a clock call per frame).
        self.activity: dict[str, int] = {}
        self._states: dict[str, str] = {}
        self._pending: dict[str, str] = {}                # symbol -> reason, for the IO layer
        self._last_trade: dict[str, int] = {}
        self._log = LogLimiter(log)
        self.messages = self.trades = self.snapshots = self.updates = 0
        self.checksum_ok = self.checksum_failed = self.gaps = self.resyncs = 0
        self.duplicates = 0
        self.rejected: dict[str, int] = {}

    # ---- the one entry point --------------------------------------------------------------
    def feed(self, frame: bytes | str, ts_recv: int | None = None) -> None:
        """Process one raw frame (WebSocket text frame or REST body) received at ``ts_recv``."""
        self.messages += 1
        if ts_recv is None:
            ts_recv = time.time_ns()
        try:
            self.parse(frame, ts_recv)
        except _FRAME_ERRORS as exc:
            self.frame_error(exc, ts_recv)

    def frame_error(self, exc: BaseException, ts_recv: int) -> None:
        """Count and report what a bad frame raised (``feed`` calls it; so may fast paths)."""
        if isinstance(exc, ProtocolError):
            self.reject(exc.reason, exc.detail, ts_recv)
        elif isinstance(exc, BookError):
            self.reject(f"bad_{exc.field or 'level'}", str(exc), ts_recv)
        elif isinstance(exc, orjson.JSONDecodeError):
            self.reject("bad_json", str(exc), ts_recv)
        elif isinstance(exc, RecursionError):
            self.reject("malformed", "nesting too deep", ts_recv)
        else:
            self.reject("malformed", f"{type(exc).__name__}: {exc}", ts_recv)

    def parse(self, frame: bytes | str, ts_recv: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- state ----------------------------------------------------------------------------
    def state(self, symbol: str) -> str:
        """``"syncing"`` until the first snapshot, ``"live"``, ``"resyncing"`` after a gap."""
        return self._states.get(symbol, SYNCING)

    @property
    def pending_resync(self) -> bool:
        return bool(self._pending)

    def take_resyncs(self) -> dict[str, str]:
        """Symbols whose book must be rebuilt (symbol -> reason); ``""`` means the connection."""
        pending, self._pending = self._pending, {}
        return pending

    def resume_offline(self, symbol: str) -> None:
        """Offline (verify) there is no fresh snapshot to fetch: carry on from the local book.

        The next integrity check (a checksum, a sequence) decides whether that was right;
        a later snapshot in the capture replaces the book anyway.
        """
        if symbol in self.books and self._states.get(symbol) == RESYNCING:
            self._states[symbol] = LIVE

    def reset_connection(self) -> None:
        """Forget per-connection state (sequence counters, channel ids).  Subclasses extend."""

    def connection_lost(self, ts_recv: int | None = None, *, planned: bool = False) -> None:
        """The socket went away: every live book may have missed updates until resubscribed.

        ``planned``: we closed it on purpose (before Binance's 24 h cut); the books are rebuilt
        the same way but that is routine, not a gap (see :meth:`planned_switch`).
        """
        ts_recv = ts_recv or time.time_ns()
        for symbol, st in list(self._states.items()):
            if st == LIVE and planned:
                self.planned_switch(symbol)
            elif st == LIVE:
                self.gap(symbol, "reconnect", "connection lost; resnapshot", -1, ts_recv,
                         request=False)
        self._pending.clear()      # reconnecting resubscribes everything anyway
        self.reset_connection()

    def planned_switch(self, symbol: str) -> None:
        """A live book on a connection we closed on purpose: resync it (counted), no gap.

        Trades still report a missed range through their ids (``on_trade``); a parser that can
        tell from its update ids whether book data was missed across the switch overrides this
        and reports the gap itself.
        """
        self._states[symbol] = RESYNCING
        self.resyncs += 1

    def stats(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "trades": self.trades, "books": len(self.books),
            "snapshots": self.snapshots, "updates": self.updates,
            "checksum_ok": self.checksum_ok, "checksum_failed": self.checksum_failed,
            "gaps": self.gaps, "resyncs": self.resyncs, "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
        }

    # ---- symbols (override both to keep a new exchange's table in its own module) ----------
    def instrument(self, symbol: str) -> Instrument:
        """Normalised symbol (``BTC-USD``) -> Instrument; default: ``alphapulse.symbols``."""
        return instrument(self.exchange, symbol)

    def instrument_for_native(self, native: str) -> Instrument:
        """The exchange's own symbol -> Instrument (ValueError when unknown)."""
        return from_native(self.exchange, native)

    # ---- helpers for subclasses -----------------------------------------------------------
    def touch(self, channel: str) -> None:
        """Count a frame of ``channel`` for the staleness deadlines (``"*"`` = messages)."""
        self.activity[channel] = self.activity.get(channel, 0) + 1

    def wants(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols

    def reject(self, reason: str, detail: str, ts_recv: int) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._log.warning(f"{self.exchange} rejected {reason}", detail)
        self.sink(Rejected(self.exchange, reason, detail[:500], ts_recv))

    def book_for(self, inst: Instrument) -> OrderBook:
        book = self.books.get(inst.symbol)
        if book is None:
            book = OrderBook(inst.symbol, inst.price_precision, inst.size_precision,
                             exchange=self.exchange, depth=self.depth)
            self.books[inst.symbol] = book
            self.natives[inst.symbol] = inst.native
        return book

    def apply_snapshot(self, book: OrderBook, bids: Any, asks: Any, ts_event: int,
                       ts_recv: int) -> None:
        """Replace ``book`` (sequence keeps rising) and go live; emits BookSnapshot."""
        delta = book.snapshot(bids, asks)
        symbol = book.symbol
        self._states[symbol] = LIVE
        self._pending.pop(symbol, None)
        self.snapshots += 1
        self.sink(BookSnapshot(self.exchange, symbol, self.natives[symbol], delta, ts_event,
                               ts_recv))

    def apply_update(self, book: OrderBook, changes: Any, ts_event: int, ts_recv: int,
                     verify: Callable[[OrderBook], bool] | None = None) -> bool:
        """Apply one message's changes.  Returns False (and requests a resync) on failure.

        ``verify`` (e.g. a checksum comparison) runs on the book after the changes; when it
        fails the update is not emitted: the book is wrong and is being rebuilt.
        """
        delta = book.apply(changes)
        if verify is not None and not verify(book):
            return False
        symbol = book.symbol
        self.updates += 1
        self.sink(make_book_update(self.exchange, symbol, self.natives[symbol], delta, ts_event,
                                   ts_recv))
        if self.check_crossed and book.crossed:
            self.gap(symbol, "crossed", f"best bid {book.best_bid()} >= best ask "
                     f"{book.best_ask()}", -1, ts_recv)
            return False
        return True

    def on_trade(self, symbol: str, native: str, price: str, size: str, side: str,
                 trade_id: str, ts_event: int, ts_recv: int, seq: int | None = None) -> None:
        """Emit a Trade unless ``seq`` (integer trade id) was already seen; count id jumps."""
        if seq is not None:
            last = self._last_trade.get(symbol)
            if last is not None:
                if seq <= last:
                    self.duplicates += 1
                    return
                if seq > last + 1:
                    self.gap(symbol, "trade_id", f"trade ids {last + 1}..{seq - 1} missed",
                             seq - last - 1, ts_recv, request=False)
            self._last_trade[symbol] = seq
        self.trades += 1
        self.sink(new_trade(self.exchange, symbol, native, price, size, side, trade_id,
                            ts_event, ts_recv))

    def gap(self, symbol: str, reason: str, detail: str, missed: int, ts_recv: int, *,
            request: bool = True) -> None:
        """Data was missed: emit Gap; with ``request`` mark ``resyncing`` and queue a resync."""
        self.gaps += 1
        self._log.warning(f"{self.exchange} gap {reason}", f"{symbol}: {detail}")
        self.sink(Gap(self.exchange, symbol, reason, detail, missed, ts_recv))
        if reason == "trade_id":
            return
        if symbol:
            self._states[symbol] = RESYNCING
        else:
            for s in self._states:
                self._states[s] = RESYNCING
        self.resyncs += 1
        if request:
            self._pending[symbol] = reason
