"""The in-memory trade store and its incremental OHLCV bars.

One bounded buffer per (exchange, symbol) holds the last ``capacity`` trades (100,000 by
default); once full, each new trade evicts the oldest.  Trades are packed into one ``bytes``
object each (two timestamps, the side, then price / size / trade id as the exchange wrote them)
because a slotted ``Trade`` with its separate strings costs ~4x the memory, and 3 exchanges x
10 symbols x 100,000 trades must stay well under the service's memory budget.

Bars for 1m/5m/15m/1h/1d (:mod:`.bars`) are updated on every trade with exact decimal arithmetic
(``decimal.Decimal`` in a context wide enough that additions never round), so a bar always equals
-- digit for digit -- the bar :meth:`TradeStore.recompute_ohlcv` builds from the stored trades
(for every bar whose trades are all still stored).  Bars are bounded separately
(``max_bars`` per interval) and outlive the trades they were built from.

Bar rules (the same in both paths): a trade belongs to the bar whose window
``[start, start + interval)`` contains its ``ts_event``; ``open`` is the trade with the smallest
``ts_event`` (the earliest received on ties), ``close`` the one with the largest (the latest
received on ties); ``volume`` is the exact sum of sizes; ``trades`` counts them.

The store is a hub subscriber: :meth:`TradeStore.on_event` takes every event and keeps trades.
It is used from one thread (the server's event loop) and does no I/O.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce

from ..events import Trade
from ._trade_series import HEAD, SEP, SIDES, TradeSeries, unpack
from .bars import EXACT, INTERVALS, Bar

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_MAX_BARS", "INTERVALS", "Bar", "TradeSlice", "TradeStore"]

DEFAULT_CAPACITY = 100_000
DEFAULT_MAX_BARS = 10_000

@dataclass(frozen=True, slots=True)
class TradeSlice:
    """Trades selected from the store, still packed.

    Selecting only copies references (cheap enough for the event loop); decoding -- to
    ``Trade`` objects or to JSON-ready dicts -- reads immutable ``bytes`` and can run anywhere,
    e.g. in a worker thread for a 10,000-trade answer, while the store keeps changing.
    """

    exchange: str
    symbol: str
    native: str
    records: list[bytes]

    def __len__(self) -> int:
        return len(self.records)

    def trades(self) -> list[Trade]:
        ex, sym, native = self.exchange, self.symbol, self.native
        return [unpack(ex, sym, native, r) for r in self.records]

    def to_json(self) -> list[dict[str, object]]:
        """Dicts with the Trade fields plus ``timestamp`` (ts_event in seconds, original API)."""
        out = []
        head, size, sides = HEAD.unpack_from, HEAD.size, SIDES
        ex, sym, native = self.exchange, self.symbol, self.native
        for record in self.records:
            ts_event, ts_recv, side = head(record)
            price, qty, trade_id = record[size:].decode().split(SEP, 2)
            out.append({"exchange": ex, "symbol": sym, "native_symbol": native,
                        "price": price, "size": qty, "side": sides[side], "trade_id": trade_id,
                        "timestamp": ts_event / 1e9, "ts_event": ts_event, "ts_recv": ts_recv})
        return out


class TradeStore:
    """Bounded per-(exchange, symbol) trade buffers with incremental OHLCV bars."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *,
                 max_bars: int = DEFAULT_MAX_BARS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if max_bars < 1:
            raise ValueError(f"max_bars must be >= 1, got {max_bars}")
        self.capacity = capacity
        self.max_bars = max_bars
        self.started_ns = time.time_ns()
        self._series: dict[tuple[str, str], TradeSeries] = {}

    # --- ingest -----------------------------------------------------------------------------

    def on_event(self, event: object) -> None:
        """Hub subscriber: keep trades, ignore everything else."""
        if type(event) is Trade:
            # :meth:`add` inline: this runs for every trade the server receives.
            series = self._series.get((event.exchange, event.symbol))
            if series is None:
                series = self._new_series(event)
            series.add(event)

    def add(self, trade: Trade) -> None:
        """Store one trade and fold it into every interval's bar.

        Raises ``ValueError`` (storing nothing) when price or size is not a finite decimal.
        """
        series = self._series.get((trade.exchange, trade.symbol))
        if series is None:
            series = self._new_series(trade)
        series.add(trade)

    def _new_series(self, trade: Trade) -> TradeSeries:
        series = TradeSeries(trade.exchange, trade.symbol, trade.native_symbol,
                             self.capacity, self.max_bars)
        self._series[trade.exchange, trade.symbol] = series
        return series

    # --- queries ----------------------------------------------------------------------------

    def keys(self) -> list[tuple[str, str]]:
        """(exchange, symbol) pairs that have received trades, sorted."""
        return sorted(self._series)

    def symbols(self, exchange: str) -> list[str]:
        return sorted(symbol for ex, symbol in self._series if ex == exchange)

    def count(self, exchange: str, symbol: str) -> int:
        """Trades currently stored for the pair."""
        series = self._series.get((exchange, symbol))
        return 0 if series is None else len(series)

    def select(self, exchange: str, symbol: str, *, limit: int | None = None,
               start: int | None = None, end: int | None = None,
               newest: bool = True) -> TradeSlice:
        """Stored trades with ``start <= ts_event < end`` (ns; ``None`` = unbounded), oldest first.

        With ``limit``, the ``limit`` newest matching trades (``newest=True``) or the ``limit``
        oldest (``newest=False``: pages forward from ``start``).
        """
        series = self._series.get((exchange, symbol))
        if series is None or (limit is not None and limit <= 0):
            return TradeSlice(exchange, symbol, symbol, [])
        positions = series.positions(start, end)
        if limit is not None:
            if isinstance(positions, range):
                positions = positions[-limit:] if newest else positions[:limit]
            else:
                chosen = list(positions)
                positions = chosen[-limit:] if newest else chosen[:limit]
        return TradeSlice(exchange, symbol, series.native, series.records_at(positions))

    def select_recent(self, exchange: str, symbol: str, limit: int) -> TradeSlice:
        """The ``limit`` most recently received trades, newest first."""
        series = self._series.get((exchange, symbol))
        if series is None or limit <= 0:
            return TradeSlice(exchange, symbol, symbol, [])
        n = len(series)
        positions = range(n - 1, max(-1, n - 1 - limit), -1)
        return TradeSlice(exchange, symbol, series.native, series.records_at(positions))

    def trades(self, exchange: str, symbol: str, *, limit: int | None = None,
               start: int | None = None, end: int | None = None,
               newest: bool = True) -> list[Trade]:
        """:meth:`select` decoded to ``Trade`` events."""
        return self.select(exchange, symbol, limit=limit, start=start, end=end,
                           newest=newest).trades()

    def recent(self, exchange: str, symbol: str, limit: int) -> list[Trade]:
        """:meth:`select_recent` decoded to ``Trade`` events, newest first."""
        return self.select_recent(exchange, symbol, limit).trades()

    def ohlcv(self, exchange: str, symbol: str, interval: str, *, limit: int | None = None,
              start: int | None = None, end: int | None = None) -> list[Bar]:
        """Bars (oldest first) for the pair; ``limit`` keeps the newest.

        ``start`` selects the bar containing it onwards; ``end`` excludes bars starting at or
        after it.  Raises ``KeyError`` for an unknown interval.
        """
        if interval not in INTERVALS:
            raise KeyError(interval)
        series = self._series.get((exchange, symbol))
        if series is None or (limit is not None and limit <= 0):
            return []
        series.fold()
        return series.bars[interval].select(limit, start, end)

    def recompute_ohlcv(self, exchange: str, symbol: str, interval: str) -> list[Bar]:
        """Bars rebuilt from the stored trades alone, to check the live ones.

        Deliberately a different computation from the incremental one: group, sort each window
        by (ts_event, arrival), then take first/last/max/min/sum.
        """
        width = INTERVALS[interval]
        windows: dict[int, list[tuple[int, int, Decimal, Decimal]]] = {}
        for arrival, trade in enumerate(self.trades(exchange, symbol)):
            ts = trade.ts_event
            windows.setdefault(ts - ts % width, []).append(
                (ts, arrival, Decimal(trade.price), Decimal(trade.size)))
        bars = []
        for start in sorted(windows):
            rows = windows[start]
            # max()/min() keep the first of equal values (100.0 vs 100.00), in arrival order,
            # as the incremental path does; open/close come from the time order.
            prices = [row[2] for row in rows]
            by_time = sorted(rows, key=lambda row: (row[0], row[1]))
            volume = reduce(EXACT.add, (row[3] for row in rows))
            bars.append(Bar(start, by_time[0][2], max(prices), min(prices), by_time[-1][2],
                            volume, len(rows), by_time[0][0], by_time[-1][0]))
        return bars

    def sizes(self) -> Iterator[tuple[str, str, int, int]]:
        """(exchange, symbol, trades stored, bars stored) for every pair (for metrics)."""
        for (exchange, symbol), series in sorted(self._series.items()):
            series.fold()
            yield exchange, symbol, len(series), sum(len(b.starts) for b in series.bars.values())

    def summary(self, now_ns: int | None = None) -> dict[str, object]:
        """Counts, symbols, first/last times and rates, overall and per pair.

        Times are ``ts_event`` ns plus float seconds; ``rate_1m`` is trades/s received in the
        last minute; ``rate_avg`` is trades/s between the first and last trade seen.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        pairs = []
        by_exchange: dict[str, list[str]] = {}
        total_seen = total_stored = 0
        first = last = 0
        for (exchange, symbol), s in sorted(self._series.items()):
            by_exchange.setdefault(exchange, []).append(symbol)
            span = (s.last_ts - s.first_ts) / 1e9
            pairs.append({
                "exchange": exchange,
                "symbol": symbol,
                "trades_total": s.total,
                "trades_stored": len(s),
                "first_trade_ns": s.first_ts,
                "last_trade_ns": s.last_ts,
                "first_trade_time": s.first_ts / 1e9,
                "last_trade_time": s.last_ts / 1e9,
                "rate_1m": s.rate(now_ns),
                "rate_avg": (s.total - 1) / span if span > 0 else 0.0,
            })
            total_seen += s.total
            total_stored += len(s)
            first = s.first_ts if not first else min(first, s.first_ts)
            last = max(last, s.last_ts)
        return {
            "total_trades": total_seen,
            "stored_trades": total_stored,
            "capacity_per_pair": self.capacity,
            "total_exchanges": len(by_exchange),
            "total_symbols": len({p["symbol"] for p in pairs}),
            "symbols_by_exchange": by_exchange,
            "start_time": first / 1e9,
            "end_time": last / 1e9,
            "first_trade_ns": first,
            "last_trade_ns": last,
            "rate_1m": sum(p["rate_1m"] for p in pairs),     # type: ignore[misc]
            "uptime_seconds": (now_ns - self.started_ns) / 1e9,
            "pairs": pairs,
        }
