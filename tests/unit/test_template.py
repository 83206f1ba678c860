"""The exchange template (exchanges/_template.py) really works, so it cannot rot."""
from __future__ import annotations

import orjson

from alphapulse.events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from alphapulse.exchanges._template import ExampleCollector, ExampleParser

FRAMES = [
    b'{"type":"subscribed","channel":"book","symbol":"BTC_USD"}',
    b'{"type":"snapshot","symbol":"BTC_USD","seq":7,"ts":1732700000123,"bids":[["96500.1","0.5"]],'
    b'"asks":[["96500.2","1.25"]]}',
    b'{"type":"update","symbol":"BTC_USD","seq":8,"ts":1732700000150,"changes":[["bid","96500.0","2"]]}',
    b'{"type":"trade","symbol":"BTC_USD","id":991,"price":"96500.2","size":"0.01","taker":"buy",'
    b'"ts":1732700000151}',
    b'{"type":"heartbeat"}',
]


def test_template_parser_end_to_end() -> None:
    events: list = []
    p = ExampleParser(["BTC-USD"], sink=events.append)
    for f in FRAMES:
        p.feed(f, 1)
    assert [type(e) for e in events] == [BookSnapshot, BookUpdate, Trade]
    assert p.books["BTC-USD"].best_bid() == ("96500.1", "0.50000000")
    assert events[2].side == "buy" and events[2].ts_event == 1732700000151 * 10**6
    p.feed(FRAMES[2], 1)                                    # duplicate seq 8
    assert p.duplicates == 1
    p.feed(FRAMES[2].replace(b'"seq":8', b'"seq":11'), 1)    # 9 and 10 missed
    assert isinstance(events[-1], Gap) and events[-1].missed == 2
    assert p.take_resyncs() == {"BTC-USD": "sequence"} and p.state("BTC-USD") == "resyncing"
    p.feed(FRAMES[1], 1)
    assert p.state("BTC-USD") == "live"
    p.feed(b'{"type":"trade","symbol":"DOGE_EUR","id":1,"price":"1","size":"1","taker":"buy","ts":1}', 1)
    p.feed(b'{"type":"update","symbol":"BTC_USD","seq":8,"ts":1,"changes":[["bid",96500.0,"2"]]}', 1)
    assert p.rejected == {"unknown_symbol": 1, "wrong_type": 1}
    assert isinstance(events[-1], Rejected)


def test_template_collector_subscribes_with_native_symbols() -> None:
    c = ExampleCollector(["BTC-USD", "ETH-USD"])
    (msg,) = c.subscribe_messages()
    assert orjson.loads(msg)["symbols"] == ["BTC_USD", "ETH_USD"]
