"""One venue's quote in the consolidated view, kept as exact scaled ints: ``VenueQuote``.

``VenueQuote`` mirrors one venue's book for one symbol and keeps its top as integers scaled to
``COMMON_DECIMALS``, so venues quoting at different precisions compare exactly;
``format_scaled`` turns such an int back into decimal text.  :mod:`.consolidated` builds the
cross-venue view from these and re-exports the public names.
"""
from __future__ import annotations

from typing import Any

from ._book import OrderBook

# Every venue's prices and sizes are compared as integers with this many decimals.  12 covers
# every precision the exchanges use (Binance.US: 8) and keeps BTC prices under 2**63.
COMMON_DECIMALS = 12

# VenueQuote.state values (when each applies: alphapulse.consolidated).
LIVE = "live"
RESYNCING = "resyncing"
SYNCING = "syncing"

# Sentinels so the hot path compares ints without None checks: an empty bid side can never be
# above anything, an empty ask side never below anything.
NO_BID = -1
NO_ASK = 1 << 127


def _scaled(text: str, mult: int) -> int:
    """Exact decimal text with the book's fixed number of decimals -> int at COMMON_DECIMALS."""
    return int(text.replace(".", "")) * mult


def format_scaled(value: int, decimals: int) -> str:
    """An int at COMMON_DECIMALS as decimal text with ``decimals`` places (exact: no rounding
    happens for values that came from books at that precision or coarser)."""
    if decimals < COMMON_DECIMALS:
        value //= 10 ** (COMMON_DECIMALS - decimals)
    sign = "-" if value < 0 else ""
    digits = str(abs(value))
    if decimals == 0:
        return sign + digits
    digits = digits.rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


class VenueQuote:
    """One venue's book for one symbol, as the consolidated view sees it.

    Read-only for users.  ``bid_px``/``ask_px``/``bid_sz``/``ask_sz`` are ints at
    ``COMMON_DECIMALS`` (``NO_BID``/``NO_ASK`` and 0 when the side is empty); ``bid``/``ask`` are
    the book's own ``(price, size)`` text or None.  ``ts_event``/``ts_recv`` are those of the
    last event applied (how fresh the book is), ``top_ts_event``/``top_ts_recv`` those of the
    event that last changed the top of book (how old the quote is).
    """

    __slots__ = (
        "exchange", "symbol", "book", "state", "crossed",
        "bid_px", "bid_sz", "ask_px", "ask_sz", "px_mult", "sz_mult",
        "ts_event", "ts_recv", "top_ts_event", "top_ts_recv", "resync_reason",
    )

    def __init__(self, exchange: str, symbol: str) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.book: OrderBook | None = None
        self.state = SYNCING
        self.crossed = False
        self.bid_px = NO_BID
        self.ask_px = NO_ASK
        self.bid_sz = 0
        self.ask_sz = 0
        self.px_mult = 1
        self.sz_mult = 1
        self.ts_event = 0
        self.ts_recv = 0
        self.top_ts_event = 0
        self.top_ts_recv = 0
        self.resync_reason = ""

    @property
    def usable(self) -> bool:
        """Live and not crossed in itself (staleness is the caller's call: it needs a clock)."""
        return self.state == LIVE and not self.crossed

    @property
    def bid(self) -> tuple[str, str] | None:
        """Best bid ``(price, size)`` as exact text at the venue's precisions, or None."""
        return self.book.best_bid() if self.book is not None else None

    @property
    def ask(self) -> tuple[str, str] | None:
        """Best ask ``(price, size)`` as exact text at the venue's precisions, or None."""
        return self.book.best_ask() if self.book is not None else None

    def _mirror_for(self, delta: Any) -> OrderBook:
        book = self.book
        if (book is None or book.price_precision != delta.price_precision
                or book.size_precision != delta.size_precision):
            if delta.price_precision > COMMON_DECIMALS or delta.size_precision > COMMON_DECIMALS:
                raise ValueError(f"{self.exchange} {self.symbol}: precision above "
                                 f"{COMMON_DECIMALS} decimals is not supported")
            book = OrderBook(self.symbol, delta.price_precision, delta.size_precision,
                             exchange=self.exchange)
            self.book = book
            self.px_mult = 10 ** (COMMON_DECIMALS - delta.price_precision)
            self.sz_mult = 10 ** (COMMON_DECIMALS - delta.size_precision)
        return book

    def _set_top(self, top: tuple[int, int, int, int], ts_event: int, ts_recv: int) -> None:
        # top: OrderBook.bbo(), (bid price, bid size, ask price, ask size) scaled at the book's
        # own precisions, all 0 for an empty side (so an empty side's size scales to 0).
        bid_px, bid_sz, ask_px, ask_sz = top
        bid = bid_px * self.px_mult if bid_sz else NO_BID
        ask = ask_px * self.px_mult if ask_sz else NO_ASK
        self.bid_px = bid
        self.ask_px = ask
        self.bid_sz = bid_sz * self.sz_mult
        self.ask_sz = ask_sz * self.sz_mult
        # The sentinels make an empty side never crossed.
        self.crossed = bid >= ask
        self.top_ts_event = ts_event
        self.top_ts_recv = ts_recv

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        """JSON-ready view of this venue (ages in seconds at ``now_ns``)."""
        bid, ask = self.bid, self.ask
        return {
            "state": self.state,
            "crossed": self.crossed,
            "bid": list(bid) if bid else None,
            "ask": list(ask) if ask else None,
            "ts_event": self.ts_event,
            "ts_recv": self.ts_recv,
            "age_s": (now_ns - self.ts_recv) / 1e9 if self.ts_recv else None,
            "top_age_s": (now_ns - self.top_ts_recv) / 1e9 if self.top_ts_recv else None,
        }

