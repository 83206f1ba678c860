"""One (exchange, symbol) of the trade store: its bounded buffer of packed trades and its bars
(split out of :mod:`.store`, which documents the rules; both paths share the record format).

A record is one ``bytes``: ``ts_event``, ``ts_recv`` and the side packed, then price / size /
trade id as the exchange wrote them, separated by a unit separator.
"""
from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation, localcontext

from ..events import Trade
from .bars import EXACT, INTERVALS, Bar, Bars

RATE_WINDOW_S = 60
SETTLE_AT = 256             # deferred sizes summed at once (see TradeSeries._sizes)
PRICE_CACHE = 256           # price texts remembered per pair (emptied when full)

HEAD = struct.Struct("<qqB")        # ts_event, ts_recv, side (0 buy, 1 sell)
TS_EVENT = struct.Struct("<q")      # the record's first field, read alone by time searches
SEP = "\x1f"                        # unit separator: never part of a decimal or a trade id
SIDES = ("buy", "sell")


def unpack(exchange: str, symbol: str, native: str, record: bytes) -> Trade:
    """The Trade a record stands for."""
    ts_event, ts_recv, side = HEAD.unpack_from(record)
    price, size, trade_id = record[HEAD.size:].decode().split(SEP, 2)
    return Trade(exchange, symbol, native, price, size, SIDES[side], trade_id, ts_event, ts_recv)


def _not_finite(trade: Trade) -> ValueError:
    return ValueError(f"trade {trade.trade_id!r}: price/size must be finite decimals")


class TradeSeries:
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
        record = HEAD.pack(ts, trade.ts_recv, trade.side == "sell") + (
            f"{text}{SEP}{trade.size}{SEP}{trade.trade_id}".encode())
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
        records, slot, ts_of = self.records, self._slot, TS_EVENT.unpack_from
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
        records, slot, ts_of = self.records, self._slot, TS_EVENT.unpack_from
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
