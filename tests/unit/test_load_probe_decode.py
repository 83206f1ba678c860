"""The ramp's raw probe (scripts/load_ramp.py) reads ts_recv and ts_pub - ts_recv of exactly the
trade and book-delta records of a batch, as wire.py decodes them, in whole-array steps; take()
hands out a window's latencies and keeps the later records for the next window."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from alphapulse import OrderBook, wire
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Trade

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from load_ramp import RawProbe, _receipt_and_latency  # noqa: E402


def _records() -> list[bytes]:
    book = OrderBook("BTC-USD", 1, 8, exchange="kraken")
    book.snapshot([("65000.1", "0.5")], [("65001.0", "0.3")])
    out = []
    for i in range(50):
        recv, pub = 1_764_000_000_000_000_000 + 1000 * i, 1_764_000_000_000_000_000 + 1777 * i
        delta = book.update("bid", f"6500{i % 10}.2", "0.1")
        event = [Trade("coinbase", "BTC-USD", "BTC-USD", "65000.5", "0.01", "buy", str(i), 1,
                       recv),
                 BookUpdate("kraken", "BTC-USD", "BTC/USD", delta, 1, recv),
                 BookSnapshot("binanceus", "BTC-USD", "BTCUSD", delta, 1, recv),
                 Gap("kraken", "BTC-USD", "sequence", "x" * i, 1, recv)][i % 4]
        out.append(wire.encode(event, pub))
    return out


def test_probe_reads_the_times_of_trades_and_deltas_only() -> None:
    records = _records()
    raw = np.zeros(1 << 16, dtype=np.uint8)
    packed = b"".join(records)
    raw[:len(packed)] = np.frombuffer(packed, dtype=np.uint8)
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    recv, lat = _receipt_and_latency(raw, lengths)
    headers = [wire.header(r) for r in records]
    measured = [h for h in headers
                if h.type in (wire.RecordType.TRADE, wire.RecordType.BOOK_DELTA)]
    assert len(measured) == 26                       # 13 trades, 13 deltas of 50
    assert recv.tolist() == [h.ts_recv for h in measured]
    assert lat.tolist() == [h.ts_pub - h.ts_recv for h in measured]


def test_take_returns_the_window_and_keeps_later_records() -> None:
    records = _records()
    probe = RawProbe(None)            # not started: batches are handed to it directly
    for part in (records[:17], records[17:]):
        probe._batches.append((b"".join(part), np.array([len(r) for r in part])))
    measured = [h for h in map(wire.header, records)
                if h.type in (wire.RecordType.TRADE, wire.RecordType.BOOK_DELTA)]
    t0, t1 = measured[3].ts_recv, measured[10].ts_recv
    assert probe.take(t0, t1).tolist() == [h.ts_pub - h.ts_recv for h in measured[3:11]]
    later = measured[11:]
    assert probe.take(t1, later[-1].ts_recv).tolist() == [h.ts_pub - h.ts_recv for h in later]
    assert probe.take(0, 1 << 62).size == 0
