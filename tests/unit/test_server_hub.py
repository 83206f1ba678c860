"""Hub fan-out, the book mirror, the inter-process record codec and Redis entry ids."""
from __future__ import annotations

import pytest

from alphapulse import OrderBook
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from alphapulse.server.hub import BookMirror, Hub
from alphapulse.server._redis_writer import _Stream
from alphapulse.server.split import decode_event, encode_event


def _book_events() -> tuple[OrderBook, list[object]]:
    book = OrderBook("BTC-USD", 2, 8, exchange="coinbase")
    snap = book.snapshot([("100.00", "1"), ("99.50", "2")], [("100.50", "1")])
    events: list[object] = [BookSnapshot("coinbase", "BTC-USD", "BTC-USD", snap, 1, 2)]
    for i in range(1, 6):
        delta = book.apply([("bid", f"{99 - i}.25", "0.5"), ("ask", f"{101 + i}.00", "3")])
        events.append(BookUpdate("coinbase", "BTC-USD", "BTC-USD", delta, 10 + i, 20 + i))
    return book, events


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def on_event(self, event: object) -> None:
        self.seen.append(event)


class _Broken:
    def on_event(self, event: object) -> None:
        raise RuntimeError("boom")


def test_hub_isolates_a_failing_subscriber() -> None:
    hub = Hub()
    first, last = _Recorder(), _Recorder()
    hub.subscribe(first)
    hub.subscribe(_Broken())
    hub.subscribe(last)
    trade = Trade("kraken", "BTC-USD", "BTC/USD", "1.0", "2", "buy", "7", 5, 6)
    hub.publish(trade)
    hub.publish(trade)
    assert first.seen == last.seen == [trade, trade]
    assert hub.errors == {"_Broken:RuntimeError": 2}
    hub.unsubscribe(first)
    hub.publish(trade)
    assert len(first.seen) == 2 and len(last.seen) == 3


def test_typed_subscriber_sees_only_its_types_in_order() -> None:
    hub = Hub()
    everything, trades_only, last = _Recorder(), _Recorder(), _Recorder()
    hub.subscribe(everything)
    hub.subscribe(trades_only, types=(Trade,))
    hub.subscribe(last)
    trade = Trade("kraken", "BTC-USD", "BTC/USD", "1.0", "2", "buy", "7", 5, 6)
    gap = Gap("kraken", "BTC-USD", "sequence", "", -1, 7)
    for event in (trade, gap, trade):
        hub.publish(event)
    assert everything.seen == last.seen == [trade, gap, trade]
    assert trades_only.seen == [trade, trade]
    hub.unsubscribe(everything)            # routes are rebuilt after a change
    hub.publish(gap)
    assert len(everything.seen) == 3 and last.seen[-1] is gap
    assert hub.subscribers == (trades_only, last)


def test_book_mirror_follows_and_drops_on_a_break() -> None:
    book, events = _book_events()
    mirror = BookMirror()
    for ev in events:
        mirror.on_event(ev)
    mirrored = mirror.book("coinbase", "BTC-USD")
    assert mirrored == book and mirrored.sequence == book.sequence
    assert mirrored.checksum() == book.checksum()
    mirror.on_event(events[3])                 # out of sequence: not trusted any more
    assert mirror.book("coinbase", "BTC-USD") is None and mirror.sequence_errors == 1
    mirror.on_event(events[0])                 # a snapshot restores it
    assert mirror.book("coinbase", "BTC-USD") is not None
    mirror.on_event(Gap("coinbase", "", "reconnect", "", -1, 0))
    assert mirror.book("coinbase", "BTC-USD") is None


def test_ring_record_codec_round_trips_every_event() -> None:
    _, events = _book_events()
    events += [Trade("binanceus", "ETH-USD", "ETHUSD", "3000.01", "0.5", "sell", "991", 1, 2),
               Gap("kraken", "BTC-USD", "checksum", "crc mismatch", -1, 3),
               Rejected("coinbase", "bad_json", "line 1", 4)]
    for ev in events:
        back = decode_event(encode_event(ev))
        assert type(back) is type(ev)
        if isinstance(ev, (BookSnapshot, BookUpdate)):
            assert back.delta == ev.delta and back.delta.sequence == ev.delta.sequence
            assert (back.exchange, back.symbol, back.ts_event, back.ts_recv) == (
                ev.exchange, ev.symbol, ev.ts_event, ev.ts_recv)
        else:
            assert back == ev
    assert decode_event(b'H{"kraken":{"stats":{}}}') == {"kraken": {"stats": {}}}
    with pytest.raises(TypeError):
        encode_event(object())


def test_stream_ids_increase_and_refuse_repeats() -> None:
    s = _Stream()
    assert s.next_id(100, 5) == (100, 5)
    assert s.next_id(100, 7) == (100, 7)
    assert s.next_id(100, 7) is None             # the same trade again
    assert s.next_id(99, 6) is None              # an older one (a reconnect's replay)
    assert s.next_id(98, 8) == (100, 8)          # a newer trade with a clock step back
    assert s.next_id(101, 1) == (101, 1)
    # No trade ids (Kraken v1): a counter within the millisecond.
    c = _Stream()
    assert [c.next_id(5, None), c.next_id(5, None), c.next_id(6, None)] == [(5, 0), (5, 1), (6, 0)]
