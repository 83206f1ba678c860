"""ArbitrageDetector on constructed books whose opportunities are known exactly."""
from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest

from alphapulse import BookSnapshot, BookUpdate, Gap, OrderBook
from alphapulse.arbitrage import DEFAULT_TAKER_FEES_BPS, ArbitrageDetector, Opportunity

T0 = 1_800_000_000_000_000_000
MS = 1_000_000
S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Venue:
    """One exchange's book, producing the events a collector would (via the real OrderBook)."""

    def __init__(self, exchange: str, pp: int, sp: int = 8, symbol: str = "BTC-USD") -> None:
        self.exchange, self.symbol = exchange, symbol
        self.book = OrderBook(symbol, pp, sp, exchange=exchange)

    def snapshot(self, bids: list, asks: list, ts: int = T0) -> BookSnapshot:
        return BookSnapshot(self.exchange, self.symbol, self.symbol,
                            self.book.snapshot(bids, asks), ts - MS, ts)

    def update(self, changes: list, ts: int = T0) -> BookUpdate:
        return BookUpdate(self.exchange, self.symbol, self.symbol, self.book.apply(changes),
                          ts - MS, ts)


def bps(x: Fraction) -> float:
    return float(x * 10_000)


def setup(**kwargs: object) -> tuple[ArbitrageDetector, Clock, Venue, Venue]:
    """Kraken asks 100.0 x 2 (bid 99.5); Coinbase bids 102.00 x 1.5 (ask 102.50)."""
    clock = Clock()
    det = ArbitrageDetector(clock=clock, **kwargs)  # type: ignore[arg-type]
    kraken, coinbase = Venue("kraken", 1), Venue("coinbase", 2)
    assert det.on_event(kraken.snapshot([("99.5", "3")], [("100.0", "2"), ("100.5", "1")])) == []
    return det, clock, kraken, coinbase


def open_one(**kwargs: object) -> tuple[ArbitrageDetector, Clock, Venue, Venue, list[Opportunity]]:
    det, clock, kraken, coinbase = setup(**kwargs)
    clock.now = T0 + 3 * MS
    out = det.on_event(coinbase.snapshot([("102.00", "1.5"), ("99.00", "4")], [("102.50", "1")],
                                         ts=clock.now))
    return det, clock, kraken, coinbase, out


def test_opportunity_reports_exact_prices_sizes_edges_fees_and_timestamps() -> None:
    det, _, _, _, out = open_one(threshold_bps=5.0, notional=20_000)
    assert len(out) == 1
    opp = out[0]
    assert (opp.status, opp.symbol) == ("open", "BTC-USD")
    assert (opp.buy_exchange, opp.buy_price, opp.buy_size) == ("kraken", "100.0", "2.00000000")
    assert (opp.sell_exchange, opp.sell_price, opp.sell_size) == ("coinbase", "102.00", "1.50000000")
    assert opp.size == "1.50000000"
    assert (opp.buy_fee_bps, opp.sell_fee_bps) == (40.0, 120.0)
    ask, bid = Fraction("100.0"), Fraction("102.00")
    assert opp.gross_bps == bps((bid - ask) / ask) == 200.0
    # Sell fee is charged on the sell price: 200 - 40 - 120 * 102/100 = 37.6 bps.
    assert opp.net_bps == bps((bid * (1 - Fraction(120, 10_000)) - ask * (1 + Fraction(40, 10_000))) / ask)
    assert opp.net_bps == pytest.approx(37.6, abs=1e-12)
    assert opp.detected_ns == T0 + 3 * MS and opp.trigger_ts_recv == T0 + 3 * MS
    assert opp.latency_s == 0.0
    assert (opp.buy_ts_event, opp.buy_ts_recv) == (T0 - MS, T0)
    assert (opp.sell_ts_event, opp.sell_ts_recv) == (T0 + 2 * MS, T0 + 3 * MS)
    assert opp.closed_ns is None and opp.duration_s is None and opp.close_reason is None
    assert (opp.threshold_bps, opp.walk_notional, opp.updates) == (5.0, 20_000.0, 0)
    assert opp.peak_net_bps == opp.last_net_bps == opp.net_bps
    assert opp.to_dict()["sell_price"] == "102.00" and opp.is_open
    assert det.opened == 1


def test_detection_latency_is_measured_from_the_triggering_update() -> None:
    det, clock, _, coinbase = setup()
    clock.now = T0 + 250_000          # 250 us after the frame was received
    (opp,) = det.on_event(coinbase.snapshot([("102.00", "1")], [("103.00", "1")], ts=T0))
    assert opp.latency_s == 250e-6


@pytest.mark.parametrize(("fees", "threshold", "opens"), [
    ({}, 0.0, True),                                     # defaults: net 37.6 bps
    ({"coinbase": 150.0}, 0.0, True),                    # 200 - 40 - 153 = 7 bps
    ({"coinbase": 160.0}, 0.0, False),                   # 200 - 40 - 163.2 < 0
    ({"kraken": 0.0, "coinbase": 0.0}, 199.0, True),
    ({"kraken": 0.0, "coinbase": 0.0}, 200.0, False),    # must be MORE than the threshold
    ({}, 37.0, True),
    ({}, 38.0, False),
])
def test_fees_and_threshold_decide(fees: dict, threshold: float, opens: bool) -> None:
    _, _, _, _, out = open_one(fees=fees, threshold_bps=threshold)
    assert bool(out) is opens


def test_unknown_exchange_uses_default_fee() -> None:
    clock = Clock()
    det = ArbitrageDetector(clock=clock, fees={"kraken": 0}, default_fee_bps=250.0)
    det.on_event(Venue("kraken", 1).snapshot([("99.0", "1")], [("100.0", "1")]))
    assert det.on_event(Venue("newex", 2).snapshot([("102.00", "1")], [("103.00", "1")])) == []
    assert det.fee_bps("newex") == 250.0 and DEFAULT_TAKER_FEES_BPS["coinbase"] == 120.0


def test_one_opportunity_is_one_open_and_one_close() -> None:
    det, clock, kraken, coinbase, out = open_one()
    events = list(out)
    seen: list[Opportunity] = []
    det.callbacks.append(seen.append)
    # Prices move while it stays open: tracked, not re-emitted.
    for i, change in enumerate([("bid", "102.10", "1"), ("bid", "99.50", "2"), ("bid", "102.10", "0")]):
        clock.now = T0 + (10 + i) * MS
        events += det.on_event(coinbase.update([change], ts=clock.now))
    clock.now = T0 + 20 * MS
    events += det.on_event(kraken.update([("ask", "100.0", "0.5")], ts=clock.now))
    # Three top changes (102.10 in, 102.10 out, Kraken's size); 99.50 is below the top.
    assert len(events) == 1 and det.open_opportunities()[0].updates == 3
    # Kraken's ask is lifted to 100.5: 102.00 vs 100.5 is 149 bps gross, below 40 + 122 bps.
    clock.now = T0 + 1 * S
    events += det.on_event(kraken.update([("ask", "100.0", "0")], ts=clock.now))
    assert [e.status for e in events] == ["open", "closed"]
    closed = events[1]
    assert closed.id == events[0].id and closed.close_reason == "edge"
    assert closed.closed_ns == T0 + 1 * S and closed.duration_s == (1 * S - 3 * MS) / 1e9
    assert closed.updates == 3
    assert closed.peak_net_bps == pytest.approx(
        bps((Fraction("102.10") * Fraction(9880, 10_000) - Fraction("100.4")) / 100))
    # Opening fields are those at detection.
    assert (closed.sell_price, closed.net_bps) == ("102.00", events[0].net_bps)
    assert seen == events[1:]
    assert det.open_opportunities() == [] and det.closed == 1
    # Nothing more for further non-crossing updates.
    assert det.on_event(kraken.update([("ask", "100.4", "1")], ts=clock.now)) == []


def test_stale_book_gives_no_signal_and_staleness_closes() -> None:
    det, clock, kraken, coinbase = setup(max_age_s=2.0)
    clock.now = T0 + 2 * S + 1                # Kraken's last event is now just over 2 s old
    assert det.on_event(coinbase.snapshot([("102.00", "1.5")], [("102.50", "1")], ts=clock.now)) == []
    assert det.suppressed_stale == 1
    # Kraken speaks again (below its top of book): fresh, and the opportunity opens.
    clock.now += MS
    (opened,) = det.on_event(kraken.update([("bid", "99.0", "1")], ts=clock.now))
    assert opened.buy_exchange == "kraken" and opened.sell_exchange == "coinbase"
    # Then Coinbase goes silent: expire() closes it at the moment it went stale.
    assert det.expire(now_ns=T0 + 3 * S) == []
    (closed,) = det.expire(now_ns=T0 + 10 * S)
    assert closed.close_reason == "stale"
    assert closed.closed_ns == T0 + 2 * S + 1 + 2 * S      # Coinbase ts_recv + max_age
    assert closed.duration_s == (closed.closed_ns - opened.detected_ns) / 1e9


def test_resyncing_book_gives_no_signal_until_its_next_snapshot() -> None:
    det, clock, kraken, coinbase, out = open_one()
    clock.now = T0 + 50 * MS
    (closed,) = det.on_event(Gap("coinbase", "BTC-USD", "sequence", "missed 1", 1, clock.now))
    assert closed.close_reason == "resyncing" and closed.id == out[0].id
    # Kraken keeps moving; Coinbase is still resyncing: nothing opens.
    assert det.on_event(kraken.update([("ask", "99.9", "1")], ts=clock.now)) == []
    assert det.suppressed_resyncing == 1
    clock.now = T0 + 60 * MS
    (reopened,) = det.on_event(coinbase.snapshot([("102.00", "1")], [("102.50", "1")], ts=clock.now))
    assert reopened.id == out[0].id + 1 and reopened.buy_price == "99.9"


def test_connection_wide_gap_closes_every_symbol_on_that_exchange() -> None:
    clock = Clock()
    det = ArbitrageDetector(clock=clock, fees={"kraken": 0, "coinbase": 0})
    for sym in ("BTC-USD", "ETH-USD"):
        det.on_event(Venue("kraken", 1, symbol=sym).snapshot([("99.0", "1")], [("100.0", "1")]))
        det.on_event(Venue("coinbase", 2, symbol=sym).snapshot([("101.00", "1")], [("102.00", "1")]))
    assert len(det.open_opportunities()) == 2
    closed = det.on_event(Gap("kraken", "", "reconnect", "", -1, T0))
    assert sorted(o.symbol for o in closed) == ["BTC-USD", "ETH-USD"]


def test_book_crossed_in_itself_gives_no_signal() -> None:
    det, clock, kraken, coinbase = setup()
    # Kraken's own bid (103.0) is above its own ask (100.0): the book is invalid.
    assert det.on_event(kraken.update([("bid", "103.0", "1")])) == []
    assert det.on_event(coinbase.snapshot([("102.00", "1.5")], [("102.50", "1")])) == []
    assert det.suppressed_crossed == 2   # kraken->coinbase and coinbase->kraken
    # Taking the bad bid out fixes it, and the real opportunity opens.
    (opp,) = det.on_event(kraken.update([("bid", "103.0", "0")]))
    assert (opp.buy_exchange, opp.buy_price) == ("kraken", "100.0")


def test_both_directions_and_three_venues() -> None:
    clock = Clock()
    det = ArbitrageDetector(clock=clock, fees={"kraken": 0, "coinbase": 0, "binanceus": 0})
    kraken, coinbase, binance = Venue("kraken", 1), Venue("coinbase", 2), Venue("binanceus", 8)
    det.on_event(kraken.snapshot([("100.0", "1")], [("100.2", "1")]))
    det.on_event(coinbase.snapshot([("100.10", "1")], [("100.30", "1")]))
    assert det.open_opportunities() == []
    (opp,) = det.on_event(binance.snapshot([("100.25000000", "0.5")], [("100.26000000", "1")]))
    assert (opp.buy_exchange, opp.sell_exchange, opp.sell_price) == ("kraken", "binanceus", "100.25000000")
    # Binance.US moves down: that closes, and buying there to sell on Coinbase opens.
    closed, opp2 = det.on_event(binance.update([("bid", "100.25000000", "0"),
                                                ("bid", "100.00000000", "1"),
                                                ("ask", "100.05000000", "2")]))
    assert (closed.id, closed.status, closed.close_reason) == (opp.id, "closed", "edge")
    assert (opp2.buy_exchange, opp2.sell_exchange) == ("binanceus", "coinbase")
    assert opp2.gross_bps == bps(Fraction("0.05") / Fraction("100.05"))
    assert [(o.buy_exchange, o.sell_exchange) for o in det.open_opportunities()] == [
        ("binanceus", "coinbase")]


def test_walk_to_notional_is_size_weighted_and_stops_where_it_stops_paying() -> None:
    # Kraken asks 100.0 x 1, 101.0 x 2, 103.0 x 5; Coinbase bids 104.00 x 0.5, 102.50 x 3, 101.00 x 10.
    def run(notional: float, fees: dict) -> Opportunity:
        clock = Clock()
        det = ArbitrageDetector(clock=clock, fees=fees, notional=notional)
        det.on_event(Venue("kraken", 1).snapshot(
            [("99.0", "1")], [("100.0", "1"), ("101.0", "2"), ("103.0", "5")]))
        (opp,) = det.on_event(Venue("coinbase", 2).snapshot(
            [("104.00", "0.5"), ("102.50", "3"), ("101.00", "10")], [("105.00", "1")]))
        return opp

    free = {"kraken": 0, "coinbase": 0}
    opp = run(1_000_000, free)        # no notional cap: stops when 103.0 > 102.50
    assert (opp.walk_size, opp.walk_cost, opp.walk_proceeds) == ("3.00000000", "302", "308.25")
    assert opp.walk_gross_bps == bps(Fraction("6.25") / 302) == opp.walk_net_bps
    opp = run(150, free)              # cut inside the 101.0 level, rounded down to 1e-8
    assert (opp.walk_size, opp.walk_cost, opp.walk_proceeds) == (
        "1.49504950", "149.9999995", "153.99257375")
    assert opp.walk_notional == 150.0
    # With 40 + 120 bps, (101.0 -> 102.50) no longer pays: 102.5 * 0.988 < 101 * 1.004.
    opp = run(1_000_000, {})
    assert (opp.walk_size, opp.walk_cost, opp.walk_proceeds) == ("1.00000000", "100", "103.25")
    assert opp.walk_net_bps == bps((Fraction("103.25") * Fraction("0.988") - Fraction("100.4")) / 100)


def test_recent_and_open_queries() -> None:
    det, clock, kraken, coinbase, out = open_one(fees={"kraken": 0, "coinbase": 0})
    clock.now = T0 + 1 * S
    det.on_event(kraken.update([("ask", "100.0", "0"), ("ask", "100.5", "0"),
                                ("ask", "103.0", "1")], ts=clock.now))      # closes #1
    clock.now = T0 + 2 * S
    (second,) = det.on_event(kraken.update([("ask", "101.0", "1")], ts=clock.now))   # 99 bps
    recent = det.recent("BTC-USD")
    assert [(o.id, o.status) for o in recent] == [(2, "open"), (1, "closed")]
    assert [o.id for o in det.recent("BTC-USD", limit=1)] == [2]
    assert [o.id for o in det.recent("BTC-USD", min_bps=150)] == [1]      # 200 bps gross = net
    assert det.recent("ETH-USD") == []
    assert [o.id for o in det.open()] == [2] and det.open_opportunities("ETH-USD") == []
    assert second.to_dict()["buy_price"] == "101.0"


def test_callback_errors_do_not_stop_detection() -> None:
    det, _, _, coinbase = setup()

    def boom(opp: Opportunity) -> None:
        raise RuntimeError("consumer bug")

    det.callbacks.append(boom)
    assert len(det.on_event(coinbase.snapshot([("102.00", "1")], [("102.50", "1")]))) == 1
    assert det.callback_errors == 1


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        ArbitrageDetector(max_age_s=0)
    with pytest.raises(ValueError, match="notional"):
        ArbitrageDetector(notional=-1)
    with pytest.raises(ValueError, match="kraken"):
        ArbitrageDetector(fees={"kraken": -1})


def test_async_stream_yields_open_then_close() -> None:
    async def main() -> list[tuple[int, str]]:
        det, clock, kraken, coinbase = setup()
        got: list[tuple[int, str]] = []
        async with det.stream() as stream:
            det.on_event(coinbase.snapshot([("102.00", "1.5")], [("102.50", "1")]))
            clock.now = T0 + 1 * S
            det.on_event(coinbase.update([("bid", "102.00", "0")], ts=clock.now))
            async for opp in stream:
                got.append((opp.id, opp.status))
                if opp.status == "closed":
                    break
        assert det.callbacks == []
        return got

    assert asyncio.run(main()) == [(1, "open"), (1, "closed")]


def test_async_stream_drops_oldest_when_consumer_lags() -> None:
    async def main() -> tuple[int, list[str]]:
        det, clock, _, coinbase = setup()
        stream = det.stream(maxsize=1)
        det.on_event(coinbase.snapshot([("102.00", "1.5")], [("102.50", "1")]))
        clock.now = T0 + 1 * S
        det.on_event(coinbase.update([("bid", "102.00", "0")], ts=clock.now))
        first = await stream.__anext__()
        stream.close()
        return stream.dropped, [first.status]

    assert asyncio.run(main()) == (1, ["closed"])


@pytest.mark.parametrize(("asks", "bids", "expected"), [
    # 10 ask levels of 1 against 8 bid levels of 2: both sides read past the first chunk.
    ([(f"100.{i}", "1") for i in range(10)], [(f"{110 - i / 100:.2f}", "2") for i in range(8)],
     ("10.00000000", "1004.5", "1099.8")),
    # 1 deep ask against 8 bid levels of 1: the bid side runs out.
    ([("100.0", "20")], [(f"{110 - i / 100:.2f}", "1") for i in range(8)],
     ("8.00000000", "800", "879.72")),
])
def test_walk_reads_deeper_levels_when_the_first_ones_are_used_up(
        asks: list, bids: list, expected: tuple) -> None:
    det = ArbitrageDetector(clock=Clock(), fees={"kraken": 0, "coinbase": 0}, notional=1e9)
    det.on_event(Venue("kraken", 1).snapshot([("90.0", "1")], asks))
    (opp,) = det.on_event(Venue("coinbase", 2).snapshot(bids, [("120.00", "1")]))
    assert (opp.walk_size, opp.walk_cost, opp.walk_proceeds) == expected


def test_a_missed_delta_closes_as_resyncing() -> None:
    det, clock, kraken, coinbase, out = open_one()
    coinbase.book.apply([("bid", "50.00", "1")])          # this delta never reaches the detector
    clock.now = T0 + 10 * MS
    (closed,) = det.on_event(coinbase.update([("bid", "51.00", "1")], ts=clock.now))
    assert (closed.id, closed.close_reason) == (out[0].id, "resyncing")
    assert det.books["BTC-USD"].sequence_errors == 1
