"""Cross-exchange view of one instrument: consolidated best bid/offer and aggregated depth.

Pure library code, no I/O.  Feed it the same events every other subscriber gets::

    books = ConsolidatedBooks()
    books.on_event(event)             # BookSnapshot / BookUpdate / Gap; anything else is ignored
    books["BTC-USD"].bbo()            # best bid and ask across venues, with venue, size and ages
    books["BTC-USD"].depth(10)        # levels summed across venues, per-venue sizes kept

How it stays incremental: each venue's book is mirrored in an ``OrderBook`` that is advanced with
``apply_delta_top(event.delta)`` (the exact delta the collector applied, so the mirror is the
collector's book, level for level, and a missed delta is caught as a ``SequenceError``).  That
call also compares the venue's top of book before and after the delta, in C, and hands back the
new top (four scaled ints, no strings) only when it changed: the common delta below the top
costs one call and no allocation.  The cross-venue best is a pass over the handful of venue
tops, done when asked (``bbo()``, ``best_bid``), not on every update.  Nothing is ever rebuilt
from scratch.

Prices and sizes stay exact: tops are kept as integers (the book's own scaled ints, and the same
scaled to ``COMMON_DECIMALS`` to compare venues that quote at different precisions, e.g. Kraken
BTC/USD at 0.1 and Coinbase at 0.01); text comes from the mirror book (``best_bid()``) or from
exact integer formatting, never from floats.  ``VenueQuote``, the per-venue state, and those
scaled-int helpers live in :mod:`._venue_quote`; this module re-exports them.

Venue states: ``"live"`` after a snapshot; ``"resyncing"`` after a ``Gap`` for that venue (or for
the venue's whole connection, ``Gap.symbol == ""``; a ``"trade_id"`` gap is about trades only,
the book stays live) or after a delta that does not continue the mirror, until the next
``BookSnapshot``.  A venue that is resyncing, or whose own book is crossed
(best bid >= best ask), is left out of the consolidated best and depth, and shown as such in
``bbo()["venues"]``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ._venue_quote import (COMMON_DECIMALS, LIVE, NO_ASK, NO_BID, RESYNCING, SYNCING, VenueQuote,
                           _scaled, format_scaled)
from .errors import SequenceError
from .events import BookSnapshot, BookUpdate, Gap

__all__ = [
    "COMMON_DECIMALS",
    "LIVE",
    "NO_ASK",
    "NO_BID",
    "RESYNCING",
    "SYNCING",
    "ConsolidatedBook",
    "ConsolidatedBooks",
    "VenueQuote",
    "format_scaled",
]

# Gap reasons that say nothing about the book (missed trades): the venue stays live.
BOOKLESS_GAPS = frozenset({"trade_id"})


class ConsolidatedBook:
    """Best bid/ask across venues and aggregated depth for one normalised symbol.

    ``on_event(event)`` returns the ``VenueQuote`` whose top of book or state changed, or None
    when the event left every top as it was (the common case, and the cheap one).
    """

    __slots__ = ("symbol", "venues", "_by_exchange", "updates", "top_changes",
                 "sequence_errors", "ignored", "revive_ns")

    def __init__(self, symbol: str, *, revive_ns: int = 0) -> None:
        self.symbol = symbol
        self.venues: list[VenueQuote] = []
        self._by_exchange: dict[str, VenueQuote] = {}
        self.updates = 0            # book events applied
        self.top_changes = 0        # of which changed some venue's top
        self.sequence_errors = 0    # deltas that did not continue the mirror (venue resynced)
        self.ignored = 0            # deltas for a venue with no snapshot yet / resyncing
        # When > 0, an event arriving more than revive_ns after the venue's previous one is
        # reported as a change even if the top is the same: a book that was stale is fresh
        # again, which can open an opportunity (the arbitrage detector sets it to max_age).
        self.revive_ns = revive_ns

    def venue(self, exchange: str) -> VenueQuote:
        """The venue's quote, created (state "syncing") on first use."""
        quote = self._by_exchange.get(exchange)
        if quote is None:
            quote = VenueQuote(exchange, self.symbol)
            self._by_exchange[exchange] = quote
            self.venues.append(quote)
        return quote

    def on_event(self, event: Any) -> VenueQuote | None:
        """Apply one event of this symbol; the venue whose top or state changed, else None."""
        kind = type(event)
        if kind is BookUpdate:
            return self._on_update(event)
        if kind is BookSnapshot:
            return self._on_snapshot(event)
        if kind is Gap and event.reason not in BOOKLESS_GAPS:
            return self.on_gap(event.exchange, event.reason)
        return None

    def _on_update(self, event: BookUpdate) -> VenueQuote | None:
        # The hot path: every book update of every venue comes through here.
        quote = self._by_exchange.get(event.exchange)
        if quote is None or quote.state != LIVE:
            # No snapshot yet, or resyncing: the next snapshot replaces the book anyway.
            self.ignored += 1
            return None
        try:
            top = quote.book.apply_delta_top(event.delta)  # type: ignore[union-attr]
        except SequenceError:
            # We missed a delta (e.g. a reader overrun upstream): the mirror can no longer be
            # trusted, exactly as if the exchange had reported a gap.
            self.sequence_errors += 1
            return self.on_gap(event.exchange, "sequence")
        self.updates += 1
        previous = quote.ts_recv
        quote.ts_event = event.ts_event
        ts_recv = quote.ts_recv = event.ts_recv
        if top is None:
            if self.revive_ns and ts_recv - previous > self.revive_ns:
                return quote
            return None
        quote._set_top(top, event.ts_event, ts_recv)
        self.top_changes += 1
        return quote

    def _on_snapshot(self, event: BookSnapshot) -> VenueQuote:
        quote = self.venue(event.exchange)
        book = quote._mirror_for(event.delta)
        book.apply_delta(event.delta)
        self.updates += 1
        self.top_changes += 1
        quote.state = LIVE
        quote.resync_reason = ""
        quote.ts_event = event.ts_event
        quote.ts_recv = event.ts_recv
        quote._set_top(book.bbo(), event.ts_event, event.ts_recv)
        return quote

    def on_gap(self, exchange: str, reason: str = "gap") -> VenueQuote | None:
        """Mark a venue resyncing until its next snapshot (no-op for an unknown venue)."""
        quote = self._by_exchange.get(exchange)
        if quote is None or quote.state == RESYNCING:
            return None
        quote.state = RESYNCING
        quote.resync_reason = reason
        return quote

    @property
    def best_bid(self) -> VenueQuote | None:
        """The usable venue with the highest bid (ties: the venue seen first), or None."""
        best = None
        for q in self.venues:
            if q.usable and q.bid_sz and (best is None or q.bid_px > best.bid_px):
                best = q
        return best

    @property
    def best_ask(self) -> VenueQuote | None:
        """The usable venue with the lowest ask (ties: the venue seen first), or None."""
        best = None
        for q in self.venues:
            if q.usable and q.ask_sz and (best is None or q.ask_px < best.ask_px):
                best = q
        return best

    # --- queries (not on the hot path) -----------------------------------------------------

    def bbo(self, now_ns: int | None = None) -> dict[str, Any]:
        """Consolidated best bid and ask, each with venue and size, plus every venue's state.

        ``{"symbol", "bid": {"price", "size", "exchange"} | None, "ask": {...} | None,
        "spread": str | None, "crossed": bool (best bid >= best ask across venues),
        "venues": {exchange: {"state", "crossed", "bid", "ask", "ts_event", "ts_recv",
        "age_s", "top_age_s"}}}``.  Prices are each venue's own exact text.
        """
        now = time.time_ns() if now_ns is None else now_ns
        out: dict[str, Any] = {"symbol": self.symbol, "bid": None, "ask": None,
                               "spread": None, "crossed": False}
        bb, ba = self.best_bid, self.best_ask
        bid = bb.bid if bb is not None else None
        ask = ba.ask if ba is not None else None
        if bb is not None and bid is not None:
            out["bid"] = {"price": bid[0], "size": bid[1], "exchange": bb.exchange}
        if ba is not None and ask is not None:
            out["ask"] = {"price": ask[0], "size": ask[1], "exchange": ba.exchange}
        if out["bid"] and out["ask"]:
            assert bb is not None and ba is not None and bb.book and ba.book
            decimals = max(bb.book.price_precision, ba.book.price_precision)
            out["spread"] = format_scaled(ba.ask_px - bb.bid_px, decimals)
            out["crossed"] = bb.bid_px >= ba.ask_px
        out["venues"] = {q.exchange: q.snapshot(now) for q in self.venues}
        return out

    def depth(self, n: int = 10) -> dict[str, Any]:
        """The top ``n`` price levels per side, summed across usable venues.

        Each level: ``{"price", "size", "venues": {exchange: size}}``, best first.  Levels of
        venues quoting at different precisions merge when their prices are equal as numbers;
        a level's text uses the finest precision among its venues.
        """
        if n <= 0:
            raise ValueError(f"depth n must be positive, got {n}")
        return {"symbol": self.symbol,
                "bids": self._merge(n, bids=True),
                "asks": self._merge(n, bids=False),
                "venues": [q.exchange for q in self.venues if q.usable]}

    def _merge(self, n: int, *, bids: bool) -> list[dict[str, Any]]:
        # Any level in the consolidated top n is in its own venue's top n.
        levels: dict[int, list[Any]] = {}   # price -> [size, price decimals, size decimals, {ex: size}]
        for q in self.venues:
            if not q.usable or q.book is None:
                continue
            book = q.book
            rows = book.bids(n) if bids else book.asks(n)
            for price, size in rows:
                px = _scaled(price, q.px_mult)
                sz = _scaled(size, q.sz_mult)
                entry = levels.get(px)
                if entry is None:
                    levels[px] = [sz, book.price_precision, book.size_precision, {q.exchange: size}]
                else:
                    entry[0] += sz
                    entry[1] = max(entry[1], book.price_precision)
                    entry[2] = max(entry[2], book.size_precision)
                    entry[3][q.exchange] = size
        ordered = sorted(levels.items(), reverse=bids)[:n]
        return [{"price": format_scaled(px, e[1]), "size": format_scaled(e[0], e[2]), "venues": e[3]}
                for px, e in ordered]


class ConsolidatedBooks:
    """One ``ConsolidatedBook`` per normalised symbol, created on first sight of the symbol.

    ``on_event`` routes BookSnapshot/BookUpdate/Gap events; a ``Gap`` with ``symbol == ""``
    (the whole connection) marks the exchange resyncing in every symbol.  ``on_change``
    callbacks get ``(book, venue_quote)`` whenever a venue's top of book or state changed.
    """

    def __init__(self, *, revive_ns: int = 0) -> None:
        self.revive_ns = revive_ns      # passed to each ConsolidatedBook (see there)
        self._books: dict[str, ConsolidatedBook] = {}
        self.on_change: list[Callable[[ConsolidatedBook, VenueQuote], None]] = []

    def __getitem__(self, symbol: str) -> ConsolidatedBook:
        return self._books[symbol]

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._books

    def __iter__(self) -> Iterator[str]:
        return iter(self._books)

    def __len__(self) -> int:
        return len(self._books)

    def get(self, symbol: str) -> ConsolidatedBook | None:
        return self._books.get(symbol)

    def book(self, symbol: str) -> ConsolidatedBook:
        """The symbol's consolidated book, created empty on first use."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = ConsolidatedBook(symbol, revive_ns=self.revive_ns)
        return book

    def on_event(self, event: Any) -> list[tuple[ConsolidatedBook, VenueQuote]]:
        """Apply one event; returns the (book, venue) pairs whose top or state changed."""
        kind = type(event)
        if kind is BookUpdate:
            book = self._books.get(event.symbol)
            if book is None:
                return []
            quote = book._on_update(event)
        elif kind is BookSnapshot:
            book = self.book(event.symbol)
            quote = book._on_snapshot(event)
        elif kind is Gap:
            return self._on_gap(event)
        else:
            return []
        if quote is None:
            return []
        for callback in self.on_change:
            callback(book, quote)
        return [(book, quote)]

    def _on_gap(self, event: Gap) -> list[tuple[ConsolidatedBook, VenueQuote]]:
        if event.reason in BOOKLESS_GAPS:
            return []
        books = self._books.values() if event.symbol == "" else (
            [self._books[event.symbol]] if event.symbol in self._books else [])
        changed = []
        for book in books:
            quote = book.on_gap(event.exchange, event.reason)
            if quote is not None:
                changed.append((book, quote))
                for callback in self.on_change:
                    callback(book, quote)
        return changed
