"""Incremental OHLCV bars with exact decimal arithmetic (the trade store's bar side).

A bar always equals -- digit for digit -- the bar recomputed from its trades: ``volume`` is an
exact ``Decimal`` sum (a context of unbounded precision that also traps ``Inexact``) and prices
keep the exchange's decimal text.  Rules: see
:mod:`alphapulse.server.store`.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation

#: Supported bar intervals and their length in nanoseconds.
INTERVALS: dict[str, int] = {
    "1m": 60 * 10**9,
    "5m": 300 * 10**9,
    "15m": 900 * 10**9,
    "1h": 3600 * 10**9,
    "1d": 86400 * 10**9,
}

# Unbounded precision and exponent range: a sum of finite decimals is always exact (the
# Inexact trap stays as a guard), so a volume never rounds and a sum deferred to a read
# cannot fail there.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, InvalidOperation])


@dataclass(slots=True)
class Bar:
    """One OHLCV bar.  Prices keep the exchange's decimal text; ``volume`` is an exact sum."""

    start: int              # window start, ns since the epoch
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    open_ts: int            # ts_event of the opening / closing trade (tie-break state)
    close_ts: int

    def to_json(self, interval: str) -> dict[str, object]:
        return {
            "timestamp": self.start / 1e9,
            "start": self.start,
            "end": self.start + INTERVALS[interval],
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
            "volume": str(self.volume),
            "trades": self.trades,
        }

    def key(self) -> tuple[object, ...]:
        """The observable values (for equality checks against a recomputation)."""
        return (self.start, str(self.open), str(self.high), str(self.low), str(self.close),
                str(self.volume), self.trades)


class Bars:
    """Bars of one interval for one (exchange, symbol): a dict plus the sorted window starts."""

    __slots__ = ("width", "max_bars", "by_start", "starts", "dropped")

    def __init__(self, width: int, max_bars: int) -> None:
        self.width = width
        self.max_bars = max_bars
        self.by_start: dict[int, Bar] = {}
        self.starts: list[int] = []
        self.dropped = 0            # late trades older than every bar kept

    def add(self, price: Decimal, size: Decimal, ts: int) -> None:
        start = ts - ts % self.width
        bar = self.by_start.get(start)
        if bar is not None:
            # Inline (no helper call): this runs five times per trade.
            if price > bar.high:
                bar.high = price
            if price < bar.low:
                bar.low = price
            if ts < bar.open_ts:
                bar.open, bar.open_ts = price, ts
            if ts >= bar.close_ts:
                bar.close, bar.close_ts = price, ts
            bar.volume = EXACT.add(bar.volume, size)
            bar.trades += 1
            return
        starts = self.starts
        if len(starts) >= self.max_bars and start < starts[0]:
            self.dropped += 1
            return
        self.by_start[start] = Bar(start, price, price, price, price, size, 1, ts, ts)
        if not starts or start > starts[-1]:
            starts.append(start)
        else:                       # a late trade opening an older window: rare
            insort(starts, start)
        if len(starts) > self.max_bars:
            del self.by_start[starts.pop(0)]

    def merge(self, part: Bar, volume: Decimal, trades: int) -> None:
        """Fold ``trades`` more trades of the finer bar ``part`` (whose whole window lies in one
        of this interval's windows) adding ``volume``: the same result as adding each trade.

        Ties cannot cross windows (the trades of different finer windows have different
        ``ts_event``), so comparing the finer bar's open/close times decides exactly as the
        per-trade rules would; a repeated fold of the same ``part`` changes only what is new.
        """
        start = part.start - part.start % self.width
        bar = self.by_start.get(start)
        if bar is not None:
            if part.high > bar.high:
                bar.high = part.high
            if part.low < bar.low:
                bar.low = part.low
            if part.open_ts < bar.open_ts:
                bar.open, bar.open_ts = part.open, part.open_ts
            if part.close_ts >= bar.close_ts:
                bar.close, bar.close_ts = part.close, part.close_ts
            bar.volume = EXACT.add(bar.volume, volume)
            bar.trades += trades
            return
        starts = self.starts
        if len(starts) >= self.max_bars and start < starts[0]:
            self.dropped += trades
            return
        self.by_start[start] = Bar(start, part.open, part.high, part.low, part.close, volume,
                                   trades, part.open_ts, part.close_ts)
        if not starts or start > starts[-1]:
            starts.append(start)
        else:
            insort(starts, start)
        if len(starts) > self.max_bars:
            del self.by_start[starts.pop(0)]

    def select(self, limit: int | None, start: int | None, end: int | None) -> list[Bar]:
        starts = self.starts
        lo = 0 if start is None else bisect_left(starts, start - start % self.width)
        hi = len(starts) if end is None else bisect_left(starts, end)
        if limit is not None and hi - lo > limit:
            lo = hi - limit
        return [self.by_start[s] for s in starts[lo:hi]]
