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

import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from functools import reduce

from ..events import Trade
from .bars import EXACT, INTERVALS, Bar, Bars

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_MAX_BARS", "INTERVALS", "Bar", "TradeSlice", "TradeStore"]

DEFAULT_CAPACITY = 100_000
DEFAULT_MAX_BARS = 10_000
RATE_WINDOW_S = 60
SETTLE_AT = 256             # deferred sizes summed at once (see _Series._sizes)
PRICE_CACHE = 256           # price texts remembered per pair (emptied when full)


_HEAD = struct.Struct("<qqB")       # ts_event, ts_recv, side (0 buy, 1 sell)
_TS_EVENT = struct.Struct("<q")     # the record's first field, read alone by time searches
_SEP = "\x1f"                       # unit separator: never part of a decimal or a trade id
_SIDES = ("buy", "sell")


def _unpack(exchange: str, symbol: str, native: str, record: bytes) -> Trade:
    ts_event, ts_recv, side = _HEAD.unpack_from(record)
    price, size, trade_id = record[_HEAD.size:].decode().split(_SEP, 2)
    return Trade(exchange, symbol, native, price, size, _SIDES[side], trade_id, ts_event, ts_recv)


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
        return [_unpack(ex, sym, native, r) for r in self.records]

    def to_json(self) -> list[dict[str, object]]:
        """Dicts with the Trade fields plus ``timestamp`` (ts_event in seconds, original API)."""
        out = []
        head, size, sides = _HEAD.unpack_from, _HEAD.size, _SIDES
        ex, sym, native = self.exchange, self.symbol, self.native
        for record in self.records:
            ts_event, ts_recv, side = head(record)
            price, qty, trade_id = record[size:].decode().split(_SEP, 2)
            out.append({"exchange": ex, "symbol": sym, "native_symbol": native,
                        "price": price, "size": qty, "side": sides[side], "trade_id": trade_id,
                        "timestamp": ts_event / 1e9, "ts_event": ts_event, "ts_recv": ts_recv})
        return out


def _not_finite(trade: Trade) -> ValueError:
    return ValueError(f"trade {trade.trade_id!r}: price/size must be finite decimals")


class _Series:
    """The bounded trade buffer and the bars of one (exchange, symbol)."""

    __slots__ = ("exchange", "symbol", "native", "capacity", "records", "head", "total",
                 "first_ts", "last_ts", "bars", "_inversion", "_second", "_marks",
                 "_finest", "_wider", "_pending", "_window_start", "_window_end", "_sizes",
                 "_folded_volume", "_folded_trades", "_prices")

    def __init__(self, exchange: str, symbol: str, native: str, capacity: int,
                 max_bars: int) -> None:
        self.exchange, self.symbol, self.native = exchange, symbol, native
        self.capacity = capacity
        self.records: list[bytes] = []      # circular once full; ``head`` is the oldest slot
        self.head = 0
        self.total = 0                      # trades ever added (stored count = len(records))
        self.first_ts = 0
        self.last_ts = 0
        # Absolute index of the newest trade whose ts_event is lower than its predecessor's;
        # while it is still stored, binary search on time would be wrong.
        self._inversion = -1
        self.bars = {name: Bars(width, max_bars) for name, width in INTERVALS.items()}
        # Only the finest interval's bar is updated per trade.  The newest finest bar is
        # *pending*: folded into the wider intervals (whose windows are whole multiples of its
        # window) when a newer window starts or before anyone reads them (:meth:`fold`).
        # A late trade, for an older finest window, goes into every interval at once.
        finest = min(INTERVALS, key=INTERVALS.__getitem__)
        self._finest = self.bars[finest]
        self._wider = [b for name, b in self.bars.items() if name != finest]
        self._pending: Bar | None = None
        self._window_start = self._window_end = 0     # the pending bar's [start, end)
        # Sizes of pending-bar trades not yet in its volume: one exact sum of a few hundred
        # (or at a read) costs far less than a context add per trade.
        self._sizes: list[Decimal] = []
        self._folded_volume = Decimal(0)
        self._folded_trades = 0
        # Recent price texts and their Decimals: a price level trades many times, and a dict
        # hit costs a fraction of a parse.
        self._prices: dict[str, Decimal] = {}
        # Receive seconds and the trade count before each ((second, total) marks, oldest
        # first, for the last minute): the rate without a scan or a per-trade counter.
        self._second: int | None = None
        self._marks: deque[tuple[int, int]] = deque(maxlen=RATE_WINDOW_S + 1)

    def add(self, trade: Trade) -> None:
        # Everything that can fail comes before the first change (a bad trade stores nothing).
        text = trade.price
        try:
            price = self._prices.get(text)
            if price is None:
                price = Decimal(text)
                if not price.is_finite():
                    raise _not_finite(trade)
                prices = self._prices
                if len(prices) >= PRICE_CACHE:
                    prices.clear()
                prices[text] = price
            size = Decimal(trade.size)
        except InvalidOperation as exc:
            raise ValueError(f"trade {trade.trade_id!r}: price {trade.price!r} / size "
                             f"{trade.size!r} is not a decimal") from exc
        if not size.is_finite():
            raise _not_finite(trade)
        ts = trade.ts_event
        if ts >= self.last_ts:
            self.last_ts = ts
        elif self.total:
            self._inversion = self.total
        second = trade.ts_recv // 10**9
        if second != self._second:
            self._new_second(second, ts)
        record = _HEAD.pack(ts, trade.ts_recv, trade.side == "sell") + (
            f"{text}{_SEP}{trade.size}{_SEP}{trade.trade_id}".encode())
        records = self.records
        if len(records) < self.capacity:
            records.append(record)
        else:
            head = self.head
            records[head] = record
            head += 1
            self.head = 0 if head == self.capacity else head
        self.total += 1
        if self._window_start <= ts < self._window_end:
            # The common case, inline: another trade for the pending bar.  high >= low and
            # open_ts <= close_ts, so each pair needs at most one change.
            bar = self._pending
            if price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            if ts >= bar.close_ts:
                bar.close, bar.close_ts = price, ts
            elif ts < bar.open_ts:
                bar.open, bar.open_ts = price, ts
            bar.trades += 1
            self._sizes.append(size)
            return
        self._other_window(price, size, ts)

    def _new_second(self, second: int, ts: int) -> None:
        if not self.total:
            self.first_ts = ts
        self._second = second
        self._marks.append((second, self.total))
        if len(self._sizes) >= SETTLE_AT:     # bounds ``_sizes``: a second's trades at most
            self._settle()                    # past the threshold

    def _other_window(self, price: Decimal, size: Decimal, ts: int) -> None:
        """A trade outside the pending bar's window: a newer window, or a late trade."""
        finest = self._finest
        pending = self._pending
        start = ts - ts % finest.width
        if pending is not None:
            self.fold()
            if start < pending.start:             # late: straight into every interval,
                for bars in self.bars.values():   # after the pending trades (arrival order
                    bars.add(price, size, ts)     # decides between equal prices' texts)
                return
        finest.add(price, size, ts)
        self._pending = finest.by_start[start]
        self._window_start, self._window_end = start, start + finest.width
        self._folded_volume, self._folded_trades = Decimal(0), 0

    def _settle(self) -> None:
        """Add the deferred sizes to the pending bar's volume."""
        sizes = self._sizes
        if sizes:
            with localcontext(EXACT):
                self._pending.volume = sum(sizes, self._pending.volume)  # type: ignore[union-attr]
            sizes.clear()

    def fold(self) -> None:
        """Bring the pending bar's volume and the wider intervals' bars up to date."""
        pending = self._pending
        if pending is None or pending.trades == self._folded_trades:
            return
        self._settle()
        volume = EXACT.subtract(pending.volume, self._folded_volume)
        trades = pending.trades - self._folded_trades
        for bars in self._wider:
            bars.merge(pending, volume, trades)
        self._folded_volume, self._folded_trades = pending.volume, pending.trades

    def __len__(self) -> int:
        return len(self.records)

    def _slot(self, i: int) -> int:
        return (self.head + i) % len(self.records) if self.head else i

    def _sorted(self) -> bool:
        oldest_abs = self.total - len(self.records)
        return self._inversion <= oldest_abs    # the inverted pair is no longer fully stored

    def _index_of_time(self, ts: int) -> int:
        """The first position (0 = oldest) whose ts_event >= ts, on a time-sorted buffer."""
        lo, hi = 0, len(self.records)
        records, slot, ts_of = self.records, self._slot, _TS_EVENT.unpack_from
        while lo < hi:
            mid = (lo + hi) // 2
            if ts_of(records[slot(mid)])[0] < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def positions(self, start: int | None, end: int | None) -> Iterator[int] | range:
        """Positions (oldest first) of trades with start <= ts_event < end."""
        n = len(self.records)
        if start is None and end is None:
            return range(n)
        if self._sorted():
            lo = 0 if start is None else self._index_of_time(start)
            hi = n if end is None else self._index_of_time(end)
            return range(lo, max(lo, hi))
        lo_ts = -(1 << 63) if start is None else start
        hi_ts = (1 << 63) if end is None else end
        records, slot, ts_of = self.records, self._slot, _TS_EVENT.unpack_from
        return (i for i in range(n) if lo_ts <= ts_of(records[slot(i)])[0] < hi_ts)

    def records_at(self, positions: Iterable[int]) -> list[bytes]:
        records, n, head = self.records, len(self.records), self.head
        if not head:
            if isinstance(positions, range) and positions.step == 1:
                return records[positions.start:positions.stop]
            return [records[p] for p in positions]
        return [records[(head + p) % n] for p in positions]

    def rate(self, now_ns: int) -> float:
        """Trades per second received (ts_recv) in the last ``RATE_WINDOW_S`` whole seconds."""
        now_s = now_ns // 10**9
        marks = self._marks
        ends = [total for _, total in marks][1:] + [self.total]
        n = sum(end - before for (second, before), end in zip(marks, ends)
                if now_s - second < RATE_WINDOW_S)
        return n / RATE_WINDOW_S


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
        self._series: dict[tuple[str, str], _Series] = {}

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

    def _new_series(self, trade: Trade) -> _Series:
        series = _Series(trade.exchange, trade.symbol, trade.native_symbol,
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
