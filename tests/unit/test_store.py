"""The trade store: bounds, time queries, and incremental OHLCV == recomputation, to the digit."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse.events import Trade
from alphapulse.server import _trade_series as trade_series_module
from alphapulse.server.store import INTERVALS, TradeStore

BASE = 1_700_000_000_000_000_000        # 2023-11-14T22:13:20Z, a whole day boundary + 80000 s
SEC = 10**9


def trade(i: int, ts: int, price: str = "100.00", size: str = "1", *, side: str = "buy",
          exchange: str = "coinbase", symbol: str = "BTC-USD") -> Trade:
    return Trade(exchange, symbol, symbol, price, size, side, str(i), ts, ts + 1000)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_verbatim() -> None:
    store = TradeStore()
    original = Trade("kraken", "ETH-USD", "ETH/USD", "3512.10", "0.00100000", "sell",
                     "id-with\u00e9-unicode", BASE + 5, BASE + 9)
    store.add(original)
    assert store.trades("kraken", "ETH-USD") == [original]
    assert store.recent("kraken", "ETH-USD", 5) == [original]


def test_capacity_bounds_each_pair_separately() -> None:
    store = TradeStore(capacity=10)
    for i in range(25):
        store.add(trade(i, BASE + i * SEC))
    store.add(trade(0, BASE, exchange="kraken"))
    assert store.count("coinbase", "BTC-USD") == 10
    assert store.count("kraken", "BTC-USD") == 1
    assert [t.trade_id for t in store.trades("coinbase", "BTC-USD")] == [str(i) for i in range(15, 25)]
    assert [t.trade_id for t in store.recent("coinbase", "BTC-USD", 3)] == ["24", "23", "22"]
    summary = store.summary()
    assert summary["total_trades"] == 26 and summary["stored_trades"] == 11


def test_time_range_limit_and_paging() -> None:
    store = TradeStore(capacity=100)
    for i in range(150):                       # wraps the circular buffer
        store.add(trade(i, BASE + i * SEC))
    got = store.trades("coinbase", "BTC-USD", start=BASE + 60 * SEC, end=BASE + 70 * SEC)
    assert [t.trade_id for t in got] == [str(i) for i in range(60, 70)]
    newest = store.trades("coinbase", "BTC-USD", start=BASE + 60 * SEC, limit=3)
    assert [t.trade_id for t in newest] == ["147", "148", "149"]
    first = store.trades("coinbase", "BTC-USD", start=BASE + 60 * SEC, limit=3, newest=False)
    assert [t.trade_id for t in first] == ["60", "61", "62"]
    assert store.trades("coinbase", "BTC-USD", start=BASE + 10 * SEC, end=BASE + 20 * SEC) == []
    assert store.trades("coinbase", "BTC-USD", limit=0) == []
    assert store.trades("nope", "BTC-USD") == []


def test_out_of_order_timestamps_fall_back_to_a_scan() -> None:
    store = TradeStore(capacity=100)
    for i, offset in enumerate([1, 5, 3, 7, 2, 9]):
        store.add(trade(i, BASE + offset * SEC))
    got = store.trades("coinbase", "BTC-USD", start=BASE + 2 * SEC, end=BASE + 6 * SEC)
    assert sorted(t.ts_event for t in got) == [BASE + 2 * SEC, BASE + 3 * SEC, BASE + 5 * SEC]


def test_bar_values_exact() -> None:
    store = TradeStore()
    minute = BASE - BASE % INTERVALS["1m"]
    store.add(trade(1, minute + 1 * SEC, "100.10", "0.1"))
    store.add(trade(2, minute + 2 * SEC, "101.5", "0.2"))
    store.add(trade(3, minute + 3 * SEC, "99.99", "0.30000000"))
    store.add(trade(4, minute + 4 * SEC, "100.00", "0.00000001"))
    store.add(trade(5, minute + 61 * SEC, "102", "5"))
    bars = store.ohlcv("coinbase", "BTC-USD", "1m")
    assert [b.to_json("1m") for b in bars][0] == {
        "timestamp": minute / 1e9, "start": minute, "end": minute + 60 * SEC,
        "open": "100.10", "high": "101.5", "low": "99.99", "close": "100.00",
        "volume": "0.60000001", "trades": 4,
    }
    assert bars[1].volume == Decimal("5") and bars[1].trades == 1
    assert len(store.ohlcv("coinbase", "BTC-USD", "1m", limit=1)) == 1
    assert store.ohlcv("coinbase", "BTC-USD", "1m", start=minute + 70 * SEC)[0].start == minute + 60 * SEC
    assert store.ohlcv("coinbase", "BTC-USD", "1m", end=minute + 60 * SEC)[-1].start == minute
    (day,) = store.ohlcv("coinbase", "BTC-USD", "1d")
    assert day.trades == 5 and day.volume == Decimal("5.60000001") and day.close == Decimal("102")


def test_volume_sum_never_rounds() -> None:
    store = TradeStore()
    # 28 significant digits would be Decimal's default; this sum needs more.
    store.add(trade(1, BASE, "1", "123456789012345678901.12345678"))
    store.add(trade(2, BASE + 1, "1", "0.00000001"))
    (bar,) = store.ohlcv("coinbase", "BTC-USD", "1m")
    assert str(bar.volume) == "123456789012345678901.12345679"


def test_volume_beyond_sixty_digits_stays_exact() -> None:
    # Sizes are summed later (at a read, or a few hundred at a time): that sum cannot be
    # allowed to fail, so the context has no precision limit.
    store = TradeStore()
    store.add(trade(1, BASE, "1", "1E+40"))
    store.add(trade(2, BASE + 1, "1", "0.000000000000000000000000001"))
    (bar,) = store.ohlcv("coinbase", "BTC-USD", "1d")
    assert str(bar.volume) == "1" + "0" * 40 + "." + "0" * 26 + "1"


def test_deferred_volume_mixed_precisions_across_settles(monkeypatch) -> None:
    # Sizes of many precisions and magnitudes in one minute, over many receive seconds (each
    # may sum the deferred sizes), with reads in between: every read is exact to the digit.
    monkeypatch.setattr(trade_series_module, "SETTLE_AT", 3)
    store = TradeStore()
    sizes = ["0.1", "0.00000001", "5", "123456789012.5", "0.10", "1E-20", "7.000", "0E-9",
             "1E+3", "0.3"]
    minute = BASE - BASE % INTERVALS["1m"]
    for i in range(40):
        ts = minute + i * SEC
        store.add(Trade("coinbase", "BTC-USD", "BTC-USD", "100", sizes[i % len(sizes)], "buy",
                        str(i), ts, ts + (i // 2) * SEC))
        if i % 7 == 0:
            for interval in ("1m", "1h"):
                assert [b.key() for b in store.ohlcv("coinbase", "BTC-USD", interval)] == \
                    [b.key() for b in store.recompute_ohlcv("coinbase", "BTC-USD", interval)]
    (bar,) = store.ohlcv("coinbase", "BTC-USD", "1m")
    assert (bar.trades, str(bar.volume)) == (40, "493827160100.00000004000000000004")


def test_equal_prices_in_other_texts_keep_first_high_low_and_latest_close() -> None:
    # Remembered prices are per text: "100.0" and "100.00" are the same value, not the same
    # text.  Ties keep the first received for high/low, the latest for close.
    store = TradeStore()
    minute = BASE - BASE % INTERVALS["1m"]
    for i, price in enumerate(["100.0", "100.00", "99.9", "100", "99.90", "100.00"]):
        store.add(trade(i, minute + i * SEC, price))
    (bar,) = store.ohlcv("coinbase", "BTC-USD", "1m")
    assert (str(bar.open), str(bar.high), str(bar.low), str(bar.close)) == \
        ("100.0", "100.0", "99.9", "100.00")
    assert [b.key() for b in store.ohlcv("coinbase", "BTC-USD", "1m")] == \
        [b.key() for b in store.recompute_ohlcv("coinbase", "BTC-USD", "1m")]


def test_bad_decimal_rejected_and_nothing_stored() -> None:
    store = TradeStore()
    for bad in ("abc", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            store.add(trade(1, BASE, bad, "1"))
        with pytest.raises(ValueError):
            store.add(trade(1, BASE, "100", bad))
    assert store.count("coinbase", "BTC-USD") == 0
    assert store.ohlcv("coinbase", "BTC-USD", "1m") == []
    assert store.summary()["pairs"][0]["first_trade_ns"] == 0
    # A rejected size leaves no trace of its (valid, remembered) price either.
    store.add(trade(2, BASE + SEC, "100", "2"))
    with pytest.raises(ValueError):
        store.add(trade(3, BASE + 2 * SEC, "150", "sNaN"))
    store.add(trade(4, BASE + 3 * SEC, "150", "1"))
    (bar,) = store.ohlcv("coinbase", "BTC-USD", "1m")
    assert (bar.trades, str(bar.volume), str(bar.high)) == (2, "3", "150")
    assert store.summary()["pairs"][0]["first_trade_ns"] == BASE + SEC


def test_max_bars_bound_and_late_trades() -> None:
    store = TradeStore(max_bars=3)
    for i in range(5):
        store.add(trade(i, BASE + i * 60 * SEC))
    starts = [b.start for b in store.ohlcv("coinbase", "BTC-USD", "1m")]
    assert len(starts) == 3 and starts == sorted(starts)
    store.add(trade(9, BASE))              # older than every bar kept: dropped from bars only
    assert len(store.ohlcv("coinbase", "BTC-USD", "1m")) == 3
    assert store.count("coinbase", "BTC-USD") == 6


def test_rate_counts_receive_seconds_in_arrival_order() -> None:
    store = TradeStore()
    # ts_recv seconds 0, 0, 1, 0 (a step back), 2, 2, 70
    for i, second in enumerate([0, 0, 1, 0, 2, 2, 70]):
        store.add(Trade("coinbase", "BTC-USD", "BTC-USD", "1", "1", "buy", str(i), BASE,
                        BASE + second * SEC + 5))
    rate = lambda now: store.summary(now_ns=BASE + now * SEC)["rate_1m"]  # noqa: E731
    assert rate(2) == pytest.approx(7 / 60)        # a later second counts too (clock skew)
    assert rate(60) == pytest.approx(4 / 60)       # seconds 1, 2, 2 and 70 are in the minute
    assert rate(62) == pytest.approx(1 / 60)
    assert rate(130) == pytest.approx(0.0)


def test_summary_rates_and_times() -> None:
    store = TradeStore()
    for i in range(120):
        store.add(trade(i, BASE + i * SEC // 2))     # two per second
    summary = store.summary(now_ns=BASE + 59 * SEC + SEC // 2)   # seconds 0..59
    (pair,) = summary["pairs"]
    assert pair["first_trade_ns"] == BASE and pair["last_trade_ns"] == BASE + 119 * SEC // 2
    assert pair["rate_avg"] == pytest.approx(2.0)
    assert pair["rate_1m"] == pytest.approx(2.0)
    assert summary["symbols_by_exchange"] == {"coinbase": ["BTC-USD"]}
    # 22:13:20 .. 22:14:19.5 spans two minutes; one bar for each longer interval
    assert list(store.sizes()) == [("coinbase", "BTC-USD", 120, 2 + 1 + 1 + 1 + 1)]


# --- the property: incremental bars equal bars recomputed from the stored trades -------------

_decimals = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("99999999"),
                        places=8, allow_nan=False, allow_infinity=False)
_text = st.builds(lambda d, strip: (format(d, "f").rstrip("0").rstrip(".") if strip
                                    else format(d, "f")), _decimals, st.booleans())
_trades = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3 * 86400 * SEC), _text, _text,
              st.sampled_from(["buy", "sell"])),
    min_size=1, max_size=120)


@settings(max_examples=150, deadline=None)
@given(trades=_trades, interval=st.sampled_from(sorted(INTERVALS)))
def test_incremental_ohlcv_equals_recomputed(trades, interval) -> None:
    store = TradeStore(capacity=1000)
    # Mostly increasing times with some late arrivals, as exchanges deliver them.
    for i, (offset, price, size, side) in enumerate(trades):
        store.add(trade(i, BASE + offset, price, size, side=side))
    live = [bar.key() for bar in store.ohlcv("coinbase", "BTC-USD", interval)]
    again = [bar.key() for bar in store.recompute_ohlcv("coinbase", "BTC-USD", interval)]
    assert live == again
    assert sum(bar[-1] for bar in live) == len(trades)


# Equal values in different texts, so the high/low/open/close tie rules are exercised.
_tied = st.sampled_from(["100", "100.0", "100.00", "99.99", "99.990", "100.01"])

# Realistic order: mostly forward in small steps (ties included), some late trades, and reads
# in between (a read folds the pending finest bar into the wider intervals mid-window).
_steps = st.lists(
    st.tuples(st.one_of(st.integers(min_value=0, max_value=40 * SEC),
                        st.integers(min_value=-200 * SEC, max_value=0),
                        st.just(0)),
              st.one_of(_text, _tied), _text, st.booleans()),
    min_size=1, max_size=150)


@settings(max_examples=150, deadline=None)
@given(steps=_steps)
def test_pending_fold_equals_recomputed_with_reads_between(steps) -> None:
    store = TradeStore(capacity=1000)
    ts = BASE + 3500 * SEC                     # near an hour boundary
    for i, (step, price, size, read) in enumerate(steps):
        ts += step
        store.add(trade(i, ts, price, size))
        if read:
            interval = sorted(INTERVALS)[i % len(INTERVALS)]
            assert [b.key() for b in store.ohlcv("coinbase", "BTC-USD", interval)] == \
                [b.key() for b in store.recompute_ohlcv("coinbase", "BTC-USD", interval)]
    for interval in INTERVALS:
        live = [bar.key() for bar in store.ohlcv("coinbase", "BTC-USD", interval)]
        assert live == [b.key() for b in store.recompute_ohlcv("coinbase", "BTC-USD", interval)]
        assert sum(bar[-1] for bar in live) == len(steps)


def test_late_trade_after_pending_keeps_arrival_order_between_equal_prices() -> None:
    # Found by the property above: "0.0000011" arrives (new minute, pending), then a late
    # "0.00000110" for the older minute; the 15m high must keep the first text received.
    store = TradeStore()
    for i, (offset, price) in enumerate([(0, "0.00000001"), (40 * SEC, "0.0000011"),
                                         (0, "0.00000110")]):
        store.add(trade(i, BASE + offset, price, "0.00000001"))
    for interval in INTERVALS:
        assert [b.key() for b in store.ohlcv("coinbase", "BTC-USD", interval)] == \
            [b.key() for b in store.recompute_ohlcv("coinbase", "BTC-USD", interval)]
