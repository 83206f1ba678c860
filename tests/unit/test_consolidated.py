"""ConsolidatedBook: cross-venue best bid/offer and aggregated depth, fed by real OrderBook deltas."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse import BookSnapshot, BookUpdate, Gap, OrderBook
from alphapulse.consolidated import (NO_ASK, NO_BID, ConsolidatedBook, ConsolidatedBooks,
                                      format_scaled)

T0 = 1_800_000_000_000_000_000


class Venue:
    """One exchange's book, producing the events a collector would (via the real OrderBook)."""

    def __init__(self, exchange: str, pp: int, sp: int = 8, symbol: str = "BTC-USD") -> None:
        self.exchange, self.symbol = exchange, symbol
        self.book = OrderBook(symbol, pp, sp, exchange=exchange)

    def snapshot(self, bids: list, asks: list, ts: int = T0) -> BookSnapshot:
        return BookSnapshot(self.exchange, self.symbol, self.symbol,
                            self.book.snapshot(bids, asks), ts, ts)

    def update(self, changes: list, ts: int = T0) -> BookUpdate:
        return BookUpdate(self.exchange, self.symbol, self.symbol, self.book.apply(changes), ts, ts)

    def gap(self, symbol: str | None = None, ts: int = T0) -> Gap:
        return Gap(self.exchange, self.symbol if symbol is None else symbol, "sequence", "", -1, ts)


def two_venues() -> tuple[ConsolidatedBook, Venue, Venue]:
    cb = ConsolidatedBook("BTC-USD")
    kraken, coinbase = Venue("kraken", 1), Venue("coinbase", 2)
    cb.on_event(kraken.snapshot([("100.5", "1"), ("100.0", "2")], [("101.0", "1.5"), ("101.5", "3")]))
    cb.on_event(coinbase.snapshot([("100.40", "0.5"), ("100.00", "0.25")],
                                  [("100.90", "0.1"), ("101.50", "0.7")]))
    return cb, kraken, coinbase


def test_bbo_takes_the_best_of_each_side_with_venue_and_exact_size() -> None:
    cb, _, _ = two_venues()
    bbo = cb.bbo(now_ns=T0 + 2_000_000_000)
    assert bbo["bid"] == {"price": "100.5", "size": "1.00000000", "exchange": "kraken"}
    assert bbo["ask"] == {"price": "100.90", "size": "0.10000000", "exchange": "coinbase"}
    assert bbo["spread"] == "0.40"
    assert bbo["crossed"] is False
    assert bbo["venues"]["kraken"]["state"] == "live"
    assert bbo["venues"]["kraken"]["top_age_s"] == 2.0
    assert bbo["venues"]["coinbase"]["ask"] == ["100.90", "0.10000000"]


def test_updates_are_incremental_and_only_top_changes_are_reported() -> None:
    cb, kraken, coinbase = two_venues()
    # A level below the top changes: no venue's top moved.
    assert cb.on_event(kraken.update([("bid", "100.0", "5")])) is None
    # The best ask on Coinbase is taken out: the next level shows, Kraken's ask becomes best.
    quote = cb.on_event(coinbase.update([("ask", "100.90", "0")], ts=T0 + 5))
    assert quote is not None and quote.exchange == "coinbase"
    assert quote.ask == ("101.50", "0.70000000") and quote.top_ts_recv == T0 + 5
    assert cb.bbo()["ask"] == {"price": "101.0", "size": "1.50000000", "exchange": "kraken"}
    # A size change at the top is a top change too.
    assert cb.on_event(kraken.update([("bid", "100.5", "0.3")])) is not None
    assert cb.bbo()["bid"]["size"] == "0.30000000"
    assert cb.updates == 5 and cb.top_changes == 4


def test_equal_prices_at_different_precisions_compare_as_numbers() -> None:
    cb = ConsolidatedBook("BTC-USD")
    cb.on_event(Venue("kraken", 1).snapshot([("100.5", "1")], [("101.0", "1")]))
    cb.on_event(Venue("binanceus", 8).snapshot([("100.50000000", "2")], [("100.99999999", "1")]))
    bbo = cb.bbo()
    assert bbo["bid"]["exchange"] == "kraken"          # tie: the venue seen first keeps it
    assert bbo["ask"] == {"price": "100.99999999", "size": "1.00000000", "exchange": "binanceus"}
    assert bbo["spread"] == "0.49999999"


def test_gap_marks_a_venue_resyncing_until_its_next_snapshot() -> None:
    cb, kraken, coinbase = two_venues()
    quote = cb.on_event(coinbase.gap())
    assert quote is not None and quote.state == "resyncing"
    bbo = cb.bbo()
    assert bbo["ask"]["exchange"] == "kraken" and bbo["venues"]["coinbase"]["state"] == "resyncing"
    # Updates for a resyncing venue are ignored (its collector is rebuilding the book).
    coinbase.book.apply([("ask", "100.45", "1")])   # the collector's book moves on unseen
    assert cb.on_event(coinbase.update([("ask", "100.42", "1")])) is None
    assert cb.ignored == 1
    cb.on_event(BookSnapshot("coinbase", "BTC-USD", "BTC-USD", coinbase.book.snapshot_delta(), T0, T0))
    assert cb.bbo()["ask"] == {"price": "100.42", "size": "1.00000000", "exchange": "coinbase"}


def test_connection_wide_gap_hits_every_symbol_of_that_exchange() -> None:
    books = ConsolidatedBooks()
    btc, eth = Venue("kraken", 1), Venue("kraken", 2, symbol="ETH-USD")
    other = Venue("coinbase", 2)
    books.on_event(btc.snapshot([("1.0", "1")], [("2.0", "1")]))
    books.on_event(eth.snapshot([("1.00", "1")], [("2.00", "1")]))
    books.on_event(other.snapshot([("1.00", "1")], [("2.00", "1")]))
    changed = books.on_event(Gap("kraken", "", "reconnect", "", -1, T0))
    assert sorted(b.symbol for b, _ in changed) == ["BTC-USD", "ETH-USD"]
    assert books["BTC-USD"].venue("coinbase").state == "live"
    assert books["ETH-USD"].bbo()["bid"] is None


def test_a_missed_delta_is_caught_and_treated_as_a_gap() -> None:
    cb, kraken, _ = two_venues()
    kraken.book.apply([("bid", "90.0", "1")])        # this delta never reaches us
    quote = cb.on_event(kraken.update([("bid", "91.0", "1")]))
    assert quote is not None and quote.state == "resyncing" and quote.resync_reason == "sequence"
    assert cb.sequence_errors == 1


def test_a_crossed_venue_is_left_out() -> None:
    cb, kraken, _ = two_venues()
    quote = cb.on_event(kraken.update([("bid", "101.2", "1")]))   # Kraken bid above its own ask
    assert quote is not None and quote.crossed
    bbo = cb.bbo()
    assert bbo["bid"] == {"price": "100.40", "size": "0.50000000", "exchange": "coinbase"}
    assert bbo["venues"]["kraken"]["crossed"] is True


def test_depth_sums_levels_across_venues_keeping_per_venue_sizes() -> None:
    cb, kraken, coinbase = two_venues()
    depth = cb.depth(3)
    assert depth["bids"] == [
        {"price": "100.5", "size": "1.00000000", "venues": {"kraken": "1.00000000"}},
        {"price": "100.40", "size": "0.50000000", "venues": {"coinbase": "0.50000000"}},
        {"price": "100.00", "size": "2.25000000",
         "venues": {"kraken": "2.00000000", "coinbase": "0.25000000"}},
    ]
    assert depth["asks"][0] == {"price": "100.90", "size": "0.10000000",
                                "venues": {"coinbase": "0.10000000"}}
    assert depth["asks"][2] == {"price": "101.50", "size": "3.70000000",
                                "venues": {"kraken": "3.00000000", "coinbase": "0.70000000"}}
    cb.on_event(coinbase.gap())
    assert cb.depth(1)["asks"] == [{"price": "101.0", "size": "1.50000000",
                                    "venues": {"kraken": "1.50000000"}}]
    with pytest.raises(ValueError):
        cb.depth(0)


def test_update_before_any_snapshot_is_ignored() -> None:
    books = ConsolidatedBooks()
    venue = Venue("coinbase", 2)
    venue.book.snapshot([("1.00", "1")], [("2.00", "1")])
    assert books.on_event(venue.update([("bid", "1.50", "1")])) == []
    assert "BTC-USD" not in books


def test_on_change_callbacks_see_every_top_change() -> None:
    books = ConsolidatedBooks()
    seen: list[tuple[str, str]] = []
    books.on_change.append(lambda book, quote: seen.append((book.symbol, quote.exchange)))
    venue = Venue("coinbase", 2)
    books.on_event(venue.snapshot([("1.00", "1")], [("2.00", "1")]))
    books.on_event(venue.update([("bid", "0.50", "1")]))
    books.on_event(venue.update([("bid", "1.50", "1")]))
    assert seen == [("BTC-USD", "coinbase"), ("BTC-USD", "coinbase")]


def test_format_scaled_is_exact() -> None:
    assert format_scaled(123_450_000_000_000, 2) == "123.45"
    assert format_scaled(5 * 10**8, 8) == "0.00050000"
    assert format_scaled(7 * 10**12, 0) == "7"


def test_a_trade_id_gap_leaves_the_book_live() -> None:
    books = ConsolidatedBooks()
    venue = Venue("kraken", 1)
    books.on_event(venue.snapshot([("1.0", "1")], [("2.0", "1")]))
    assert books.on_event(Gap("kraken", "BTC-USD", "trade_id", "ids 5..6 missed", 2, T0)) == []
    assert books["BTC-USD"].on_event(Gap("kraken", "BTC-USD", "trade_id", "", 1, T0)) is None
    assert books["BTC-USD"].venue("kraken").state == "live"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from(["bid", "ask"]),
                          st.integers(96, 104), st.integers(0, 3)), max_size=60))
def test_each_venue_quote_is_its_mirror_top_after_every_update(steps: list) -> None:
    # Every update is reported exactly when it moved that venue's top, and the quote's scaled
    # ints and crossed flag are the mirror's bbo() (sentinels for an empty side).
    cb = ConsolidatedBook("BTC-USD")
    venues = [Venue("kraken", 1), Venue("coinbase", 2), Venue("binanceus", 8, sp=3)]
    for venue in venues:
        cb.on_event(venue.snapshot([("99", "1")], [("101", "1")]))
    for i, side, price, size in steps:
        venue = venues[i]
        before = venue.book.bbo()
        quote = cb.on_event(venue.update([(side, str(price), str(size))]))
        assert (quote is not None) == (venue.book.bbo() != before)
        bid_px, bid_sz, ask_px, ask_sz = venue.book.bbo()
        q = cb.venue(venue.exchange)
        assert (q.bid_px, q.bid_sz) == ((bid_px * q.px_mult, bid_sz * q.sz_mult) if bid_sz
                                        else (NO_BID, 0))
        assert (q.ask_px, q.ask_sz) == ((ask_px * q.px_mult, ask_sz * q.sz_mult) if ask_sz
                                        else (NO_ASK, 0))
        assert q.crossed == (bool(bid_sz and ask_sz) and bid_px >= ask_px)
