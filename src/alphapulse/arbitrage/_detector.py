"""The detector: consolidated books in, opened/closed opportunities out (rules: the package doc)."""
from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from ..consolidated import COMMON_DECIMALS, LIVE, ConsolidatedBook, ConsolidatedBooks, VenueQuote
from ..consolidated import format_scaled
from ..events import BookSnapshot, BookUpdate, Gap
from ._opportunity import Opportunity
from ._stream import OpportunityStream

DEFAULT_TAKER_FEES_BPS: dict[str, float] = {"coinbase": 120.0, "kraken": 40.0, "binanceus": 60.0}

_FEE_UNIT = 1_000_000            # fees are applied exactly as integers of 1e-6 bps
_BPS = 10_000 * _FEE_UNIT
_SCALE = 10 ** COMMON_DECIMALS
_WALK_FIRST = 5                  # levels read per side before walking further (then: all)


class _Tracked:
    """Mutable bookkeeping of an open opportunity (the emitted Opportunity stays frozen).

    ``ask``/``bid``: the prices (at COMMON_DECIMALS) ``last`` was computed from; while they
    stay, so does the edge (fees are fixed), and a re-check skips the big-int division.
    """

    __slots__ = ("opp", "updates", "peak", "last", "ask", "bid")

    def __init__(self, opp: Opportunity, ask: int, bid: int) -> None:
        self.opp = opp
        self.updates = 0
        self.peak = opp.net_bps
        self.last = opp.net_bps
        self.ask = ask
        self.bid = bid


def _exact_text(value: int, decimals: int) -> str:
    """A non-negative int scaled by 10**decimals as the shortest exact decimal text."""
    digits = str(value).rjust(decimals + 1, "0")
    whole, frac = digits[:-decimals], digits[-decimals:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


class _FeeUnits(dict[str, int]):
    """Taker fee per exchange in 1e-6 bps; ``[exchange]`` of an unlisted exchange is the default
    (a subscript, not a method call, on the per-check path)."""

    def __init__(self, units: dict[str, int], default: int) -> None:
        super().__init__(units)
        self.default = default

    def __missing__(self, exchange: str) -> int:
        return self.default


def _fee_units(exchange: str, bps: float) -> int:
    if not 0 <= bps < 10_000:
        raise ValueError(f"fee for {exchange!r} must be in [0, 10000) bps, got {bps!r}")
    return int(Decimal(str(bps)) * _FEE_UNIT)


class ArbitrageDetector:
    """Synchronous opportunity detector over the cross-exchange books of many symbols.

    ``fees``: taker fee in bps per exchange (merged over ``DEFAULT_TAKER_FEES_BPS``);
    ``threshold_bps``: the net edge must exceed it; ``max_age_s``: books whose last event was
    received longer ago (by ``clock``) are stale; ``notional``: quote amount the size-weighted
    walk aims for; ``clock``: ``() -> int`` ns, ``time.time_ns`` by default (inject one in
    tests / replays); ``history``: closed opportunities kept per symbol for ``recent()``;
    ``books``: share an existing ``ConsolidatedBooks`` (then feed only the detector).

    Not thread-safe: feed it from one thread (the server's event loop); ``stream()`` consumers
    may live in any loop.
    """

    def __init__(self, fees: Mapping[str, float] | None = None, threshold_bps: float = 0.0,
                 max_age_s: float = 5.0, notional: float = 10_000.0, *,
                 default_fee_bps: float = 60.0, clock: Callable[[], int] = time.time_ns,
                 history: int = 1000, books: ConsolidatedBooks | None = None) -> None:
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s!r}")
        if notional <= 0:
            raise ValueError(f"notional must be positive, got {notional!r}")
        merged = dict(DEFAULT_TAKER_FEES_BPS)
        merged.update(fees or {})
        self.fees: dict[str, float] = {k: float(v) for k, v in merged.items()}
        self.default_fee_bps = float(default_fee_bps)
        self._fee_units = _FeeUnits({k: _fee_units(k, v) for k, v in self.fees.items()},
                                    _fee_units("default", self.default_fee_bps))
        self.threshold_bps = float(threshold_bps)
        self.max_age_s = float(max_age_s)
        self._max_age_ns = int(max_age_s * 1e9)
        self.notional = float(notional)
        self._notional = int(Decimal(str(notional)) * _SCALE * _SCALE)
        self.clock = clock
        self.books = books if books is not None else ConsolidatedBooks()
        self._book_map = self.books._books
        self._top_buf = np.zeros((4, _WALK_FIRST), dtype=np.int64)
        # A book that was stale becomes usable on its next event, even one below the top.
        self.books.revive_ns = self._max_age_ns
        for book in self.books._books.values():
            book.revive_ns = self._max_age_ns
        self.callbacks: list[Callable[[Opportunity], None]] = []
        self._open: dict[str, dict[tuple[str, str], _Tracked]] = {}
        self._history: dict[str, collections.deque[Opportunity]] = {}
        self._history_len = history
        self._next_id = 1
        # Counters: plain attributes (cheap to bump on the hot path); ``stats`` has them all.
        self.events = self.top_changes = self.evaluations = 0
        self.opened = self.closed = self.callback_errors = 0
        self.suppressed_stale = self.suppressed_resyncing = self.suppressed_crossed = 0

    _COUNTERS = ("events", "top_changes", "evaluations", "opened", "closed", "suppressed_stale",
                 "suppressed_resyncing", "suppressed_crossed", "callback_errors")

    @property
    def stats(self) -> dict[str, int]:
        """Every counter by name (for metrics export)."""
        return {name: getattr(self, name) for name in self._COUNTERS}

    def fee_bps(self, exchange: str) -> float:
        return self.fees.get(exchange, self.default_fee_bps)

    # --- feeding ---------------------------------------------------------------------------

    def on_event(self, event: Any) -> list[Opportunity]:
        """Apply a BookSnapshot/BookUpdate/Gap; returns the opportunities it opened or closed."""
        self.events += 1
        kind = type(event)
        if kind is not BookUpdate:
            return self._on_other(event) if kind is BookSnapshot or kind is Gap else []
        # The hot path: one dict lookup, the mirror's apply_delta, one top-of-book read.
        book = self._book_map.get(event.symbol)
        if book is None:
            return []
        quote = book._on_update(event)
        if quote is None:
            return []            # top of book unchanged: nothing can have opened or closed
        self.top_changes += 1
        if self.books.on_change:
            for callback in self.books.on_change:
                callback(book, quote)
        if book.symbol not in self._open:
            # Nothing open for this symbol: is any venue's bid now above another's ask
            # (comparing the changed venue against every venue, itself included)?
            bid, ask = quote.bid_px, quote.ask_px
            for other in book.venues:
                if other.bid_px > ask or bid > other.ask_px:
                    break
            else:
                return []
        out: list[Opportunity] = []
        self._evaluate(book, quote, self.clock(), event.ts_recv, out)
        if out:
            self._emit(out)
        return out

    def _on_other(self, event: BookSnapshot | Gap) -> list[Opportunity]:
        out: list[Opportunity] = []
        now = self.clock()
        for book, quote in self.books.on_event(event):
            self.top_changes += 1
            self._evaluate(book, quote, now, event.ts_recv, out)
        if out:
            self._emit(out)
        return out

    def expire(self, now_ns: int | None = None) -> list[Opportunity]:
        """Close open opportunities whose books went stale without another event."""
        now = self.clock() if now_ns is None else now_ns
        out: list[Opportunity] = []
        for symbol, opened in list(self._open.items()):
            for key, tracked in list(opened.items()):
                book = self.books[symbol]
                buy, sell = book.venue(key[0]), book.venue(key[1])
                reason = self._guard(buy, sell, now)
                if reason:
                    out.append(self._close(symbol, key, reason, now, buy, sell))
        if out:
            self._emit(out)
        return out

    # --- the check -------------------------------------------------------------------------

    def _evaluate(self, book: ConsolidatedBook, changed: VenueQuote, now: int, trigger: int,
                  out: list[Opportunity]) -> None:
        self.evaluations += 1
        opened = self._open.get(book.symbol)
        exchange, bid, ask = changed.exchange, changed.bid_px, changed.ask_px
        # A direction is checked when its bid is above its ask or it is tracked (it may have
        # to close); the overwhelmingly common pair of venues is neither.  ``opened`` is
        # looked up as each check runs, since a check may open or close one.
        for other in book.venues:
            if other is changed:
                continue
            tracked = opened.get((exchange, other.exchange)) if opened else None
            if tracked is not None or other.bid_px > ask:
                self._check(book, changed, other, now, trigger, tracked, out)
            tracked = opened.get((other.exchange, exchange)) if opened else None
            if tracked is not None or bid > other.ask_px:
                self._check(book, other, changed, now, trigger, tracked, out)

    def _check(self, book: ConsolidatedBook, buy: VenueQuote, sell: VenueQuote, now: int,
               trigger: int, tracked: _Tracked | None, out: list[Opportunity]) -> None:
        reason = self._guard(buy, sell, now)
        net = 0.0
        if not reason:
            ask, bid = buy.ask_px, sell.bid_px
            if bid <= ask:
                reason = "edge" if buy.ask is not None and sell.bid is not None else "empty"
            else:
                if tracked is not None and tracked.ask == ask and tracked.bid == bid:
                    net = tracked.last
                else:
                    net = self._net_bps(ask, bid, self._fee_units[buy.exchange],
                                        self._fee_units[sell.exchange])
                if net <= self.threshold_bps:
                    reason = "edge"
        if tracked is None:
            if not reason:
                out.append(self._open_new(book, buy, sell, net, now, trigger))
            elif reason == "stale":
                self.suppressed_stale += 1
            elif reason == "resyncing":
                self.suppressed_resyncing += 1
            elif reason == "crossed":
                self.suppressed_crossed += 1
        elif reason:
            out.append(self._close(book.symbol, (buy.exchange, sell.exchange), reason, now,
                                   buy, sell))
        else:
            tracked.updates += 1
            tracked.last = net
            tracked.ask = buy.ask_px
            tracked.bid = sell.bid_px
            if net > tracked.peak:
                tracked.peak = net

    def _guard(self, buy: VenueQuote, sell: VenueQuote, now: int) -> str:
        """Why the pair cannot be traded on now, the buy venue's reason first; "" if it can."""
        for quote in (buy, sell):
            if quote.state != LIVE:
                return "resyncing"
            if quote.crossed:
                return "crossed"
            if now - quote.ts_recv > self._max_age_ns:
                return "stale"
        return ""

    @staticmethod
    def _net_bps(ask: int, bid: int, fee_buy: int, fee_sell: int) -> float:
        # Exact integer numerator, one correctly rounded division; the bps scale and the fee
        # unit cancel (10_000 / _BPS == 1 / _FEE_UNIT), so the divisor is a smaller big int.
        return (bid * (_BPS - fee_sell) - ask * (_BPS + fee_buy)) / (ask * _FEE_UNIT)

    def _open_new(self, book: ConsolidatedBook, buy: VenueQuote, sell: VenueQuote, net: float,
                  now: int, trigger: int) -> Opportunity:
        ask, bid = buy.ask, sell.bid
        assert ask is not None and bid is not None
        fb, fs = self._fee_units[buy.exchange], self._fee_units[sell.exchange]
        size_decimals = max(buy.book.size_precision, sell.book.size_precision)  # type: ignore[union-attr]
        walk = self._walk(buy, sell, fb, fs)
        cost, proceeds = walk[1], walk[2]
        # Positional, in field order: tuple.__new__ via _make is several times cheaper than the
        # keyword constructor, and this runs between detection and delivery.
        opp = Opportunity._make((
            self._next_id, "open", book.symbol,
            buy.exchange, ask[0], ask[1],                        # buy_exchange, price, size
            sell.exchange, bid[0], bid[1],                       # sell_exchange, price, size
            format_scaled(min(buy.ask_sz, sell.bid_sz), size_decimals),     # size
            (sell.bid_px - buy.ask_px) * 10_000 / buy.ask_px, net,          # gross/net bps
            self.fee_bps(buy.exchange), self.fee_bps(sell.exchange), self.threshold_bps,
            self.notional, format_scaled(walk[0], size_decimals),           # walk notional, size
            _exact_text(cost, 2 * COMMON_DECIMALS), _exact_text(proceeds, 2 * COMMON_DECIMALS),
            (proceeds - cost) * 10_000 / cost if cost else 0.0,             # walk gross bps
            ((proceeds * (_BPS - fs) - cost * (_BPS + fb)) * 10_000 / (cost * _BPS)
             if cost else 0.0),                                             # walk net bps
            now, trigger, (now - trigger) / 1e9,                 # detected, trigger, latency
            buy.ts_event, buy.ts_recv, sell.ts_event, sell.ts_recv,
            None, None, None, 0, net, net))      # closed_ns, duration, reason, updates, peak, last
        self._next_id += 1
        self._open.setdefault(book.symbol, {})[(buy.exchange, sell.exchange)] = _Tracked(
            opp, buy.ask_px, sell.bid_px)
        self.opened += 1
        return opp

    def _walk(self, buy: VenueQuote, sell: VenueQuote, fb: int, fs: int) -> tuple[int, int, int]:
        """Fill against buy's asks and sell's bids, best first: (size, cost, proceeds).

        Size at COMMON_DECIMALS, cost/proceeds at 2*COMMON_DECIMALS.  Stops at the notional
        (the last fill is cut to it, rounded down to the coarser size step of the two venues),
        at the first level pair that no longer pays after fees, or when a side runs out.
        """
        assert buy.book is not None and sell.book is not None
        step = 10 ** (COMMON_DECIMALS - min(buy.book.size_precision, sell.book.size_precision))
        # Most walks end within the first levels: read a few (scaled ints, no strings), read
        # the whole side only when those are used up.
        buf = self._top_buf
        n = buy.book.top_into(buf)[1]
        rows = buf.tolist()
        ask_px, ask_sz = rows[2][:n], rows[3][:n]
        n = sell.book.top_into(buf)[0]
        rows = buf.tolist()
        bid_px, bid_sz = rows[0][:n], rows[1][:n]
        apm, asm, bpm, bsm = buy.px_mult, buy.sz_mult, sell.px_mult, sell.sz_mult
        size = cost = proceeds = 0
        i = j = 0
        a_left = ask_sz[0] * asm if ask_sz else 0
        b_left = bid_sz[0] * bsm if bid_sz else 0
        while True:
            if i == len(ask_px) == _WALK_FIRST:
                _, _, prices, sizes = buy.book.top(0)
                ask_px, ask_sz = prices.tolist(), sizes.tolist()
                a_left = ask_sz[i] * asm if i < len(ask_sz) else 0
            if j == len(bid_px) == _WALK_FIRST:
                prices, sizes, _, _ = sell.book.top(0)
                bid_px, bid_sz = prices.tolist(), sizes.tolist()
                b_left = bid_sz[j] * bsm if j < len(bid_sz) else 0
            if i >= len(ask_px) or j >= len(bid_px):
                break
            ask, bid = ask_px[i] * apm, bid_px[j] * bpm
            if bid * (_BPS - fs) <= ask * (_BPS + fb):
                break
            qty = min(a_left, b_left)
            room = self._notional - cost
            if ask * qty >= room:
                qty = room // ask // step * step
                size += qty
                cost += ask * qty
                proceeds += bid * qty
                break
            size += qty
            cost += ask * qty
            proceeds += bid * qty
            a_left -= qty
            b_left -= qty
            if a_left == 0:
                i += 1
                a_left = ask_sz[i] * asm if i < len(ask_sz) else 0
            if b_left == 0:
                j += 1
                b_left = bid_sz[j] * bsm if j < len(bid_sz) else 0
        return size, cost, proceeds

    def _close(self, symbol: str, key: tuple[str, str], reason: str, now: int,
               buy: VenueQuote, sell: VenueQuote) -> Opportunity:
        opened = self._open[symbol]
        tracked = opened.pop(key)
        if not opened:
            del self._open[symbol]
        if reason == "stale":
            # It ended when the older book crossed max_age, not when we happened to look.
            now = min(now, min(buy.ts_recv, sell.ts_recv) + self._max_age_ns)
        start = tracked.opp.detected_ns
        now = max(now, start)
        closed = tracked.opp._replace(
            status="closed", closed_ns=now, duration_s=(now - start) / 1e9,
            close_reason=reason, updates=tracked.updates, peak_net_bps=tracked.peak,
            last_net_bps=tracked.last)
        history = self._history.get(symbol)
        if history is None:
            history = self._history[symbol] = collections.deque(maxlen=self._history_len)
        history.append(closed)
        self.closed += 1
        return closed

    def _emit(self, opportunities: list[Opportunity]) -> None:
        for callback in self.callbacks:
            for opp in opportunities:
                try:
                    callback(opp)
                except Exception:       # a consumer's bug must not stop detection
                    self.callback_errors += 1

    # --- queries ---------------------------------------------------------------------------

    def open_opportunities(self, symbol: str | None = None) -> list[Opportunity]:
        """Open opportunities (as at their opening, with live ``updates``/peak/last edge)."""
        groups = [self._open.get(symbol, {})] if symbol else list(self._open.values())
        return [t.opp._replace(updates=t.updates, peak_net_bps=t.peak, last_net_bps=t.last)
                for group in groups for t in group.values()]

    open = open_opportunities   # the contract's short name

    def recent(self, symbol: str, limit: int = 100, min_bps: float | None = None
               ) -> list[Opportunity]:
        """Newest first: open then closed opportunities for ``symbol`` whose net edge at
        detection is at least ``min_bps``; at most ``limit``."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        items = self.open_opportunities(symbol) + list(self._history.get(symbol, ()))
        if min_bps is not None:
            items = [o for o in items if o.net_bps >= min_bps]
        items.sort(key=lambda o: o.detected_ns, reverse=True)
        return items[:limit]

    def stream(self, maxsize: int = 1024) -> OpportunityStream:
        """An async iterator over every opened/closed Opportunity from now on."""
        return OpportunityStream(self, maxsize)
