"""Strategy latency over the shared-memory feed: exchange frame receipt -> the strategy's event.

A publisher process replays the Kraken capture through the real parser (checksums verified,
book applied) into a real ``ShmPublisher``, stamping ``ts_recv = time.time_ns()`` as each
frame is "received"; a strategy in this process attaches by name and, for every BookUpdate,
records ``time.time_ns() - ts_recv`` after its mirror book has been updated.  So the figure is
parse + book + encode + ring + wake-up + decode + mirror apply: everything but the network and
the server hub's other subscribers (benchmarks/server_pipeline.py measures those).

The anchor carries the same wire records over a Unix-domain SOCK_SEQPACKET socket (one send per
record, a blocking recv, same decode and mirror apply): the usual way to do local IPC.

    .venv/bin/python benchmarks/feed_latency.py [--rates 2000,20000] [--seconds 3] [--repeat 3]
    .venv/bin/python benchmarks/feed_latency.py --envelope      # the record envelope alone

"hop" is the publication -> strategy part alone (now - the record's ts_pub): encoding hand-off,
the transport, waking the strategy, decoding, the mirror apply.

Frames are released in 1 ms batches at the given rate (exchange traffic is bursty too); each
event's latency runs from its own ts_recv, so queueing inside a burst counts.  Prints markdown.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "generated" / "kraken-clean.jsonl"
CHANNELS = ["book:kraken:BTC-USD", "trades:kraken:BTC-USD"]


# --- the publisher process -------------------------------------------------------------------

def publisher(transport: str, directory: str, rate: int, seconds: float, conn: Any) -> None:
    from alphapulse import wire
    from alphapulse.capture import read_frames
    from alphapulse.exchanges import get_parser
    from alphapulse.server.shm import ShmPublisher

    frames = read_frames(CAPTURE)
    state: dict[str, Any] = {}
    pub = None
    if transport == "ring":
        pub = ShmPublisher("bench", directory=directory,
                           books=lambda e, s: state["parser"].books.get(s))
        pub.start()
        sink = pub.on_event
        poll = pub.poll
    else:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        path = os.path.join(directory, "anchor.sock")
        listener.bind(path)
        listener.listen(1)
        conn.send("ready")
        peer, _ = listener.accept()
        send, encode, now_ns = peer.send, wire.encode, time.time_ns

        def sink(event: Any) -> None:
            send(encode(event, now_ns()))

        def poll(timeout: float = 0.0) -> None:
            time.sleep(timeout)

    def new_parser() -> Any:
        state["parser"] = get_parser("kraken")(["BTC-USD"], sink=sink)
        return state["parser"].feed

    feed = new_parser()
    if transport == "ring":
        conn.send("ready")
    while not conn.poll():
        poll(0.005)
    conn.recv()   # "go": the strategy is attached
    per_ms = rate / 1000.0
    start = time.perf_counter()
    end = start + seconds
    sent = 0
    i = 0
    clock = time.time_ns
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - start) * 1000 * per_ms) + 1
        while sent < due:
            if i == len(frames):
                feed, i = new_parser(), 0
            feed(frames[i], clock())
            i += 1
            sent += 1
        poll(0.0)
        left = start + sent / rate - time.perf_counter()
        if left > 0:
            time.sleep(left)
    conn.send(("done", sent))
    conn.recv()
    if pub is not None:
        pub.close()


# --- the strategy (this process) -------------------------------------------------------------

def run(transport: str, rate: int, seconds: float, spin_us: float) -> tuple[np.ndarray, np.ndarray]:
    """(frame receipt -> strategy, publication -> strategy) latencies in ns, per book delta."""
    from alphapulse import OrderBook, wire
    from alphapulse import feed as apfeed
    from alphapulse.events import BookSnapshot, BookUpdate

    ctx = multiprocessing.get_context("spawn")
    directory = tempfile.mkdtemp(prefix="ap-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=publisher, args=(transport, directory, rate, seconds, child),
                       daemon=True)
    proc.start()
    assert parent.recv() == "ready"
    lat: list[int] = []
    hop: list[int] = []
    append, hop_append, clock = lat.append, hop.append, time.time_ns
    try:
        if transport == "ring":
            with apfeed.attach("bench", CHANNELS, directory=directory, spin_us=spin_us) as f:
                parent.send("go")
                nxt = f.next
                while True:
                    event = nxt(0.2)
                    if type(event) is BookUpdate:
                        now = clock()
                        append(now - event.ts_recv)
                        hop_append(now - f.last_ts_pub)
                    elif event is None and parent.poll():
                        break
                assert f.stats["overruns"] == 0, "the strategy fell behind"
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.connect(os.path.join(directory, "anchor.sock"))
            sock.settimeout(0.2)
            parent.send("go")
            books: dict[tuple[str, str], Any] = {}
            recv, decode, ts_pub = sock.recv, wire.decode, wire.ts_pub
            while True:
                try:
                    data = recv(1 << 16)
                    event = decode(data)
                except TimeoutError:
                    if parent.poll():
                        break
                    continue
                cls = type(event)
                if cls is BookUpdate:
                    books[(event.exchange, event.symbol)].apply_delta(event.delta)
                    now = clock()
                    append(now - event.ts_recv)
                    hop_append(now - ts_pub(data))
                elif cls is BookSnapshot:
                    d = event.delta
                    book = OrderBook(event.symbol, d.price_precision, d.size_precision)
                    book.apply_delta(d)
                    books[(event.exchange, event.symbol)] = book
            sock.close()
        parent.recv()
        parent.send("stop")
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        import shutil
        shutil.rmtree(directory, ignore_errors=True)
    return np.array(lat, dtype=np.int64), np.array(hop, dtype=np.int64)


# --- the envelope alone ----------------------------------------------------------------------

def envelope() -> None:
    """Inline names (our envelope) vs a u16 channel id from an announced table: size and time."""
    from alphapulse import wire
    from alphapulse._book import Delta
    from alphapulse.capture import read_frames
    from alphapulse.events import BookUpdate, Trade
    from alphapulse.exchanges import get_parser

    events: list[Any] = []
    parser = get_parser("kraken")(["BTC-USD"], sink=events.append)
    for frame in read_frames(CAPTURE):
        parser.feed(frame, time.time_ns())
    events = [e for e in events if type(e) in (BookUpdate, Trade)]
    ids_hdr = struct.Struct("<BBHqqq")
    table = {("kraken", "BTC-USD", "BTC/USD"): 1}
    names = {1: ("kraken", "BTC-USD", "BTC/USD")}

    def ids_encode(e: Any) -> bytes:   # the alternative: books only, same payload
        return ids_hdr.pack(0xA1, 3, table[(e.exchange, e.symbol, e.native_symbol)],
                            e.ts_event, e.ts_recv, 0) + e.delta.encode()

    def ids_decode(b: bytes) -> Any:
        _m, _t, cid, te, tr, _tp = ids_hdr.unpack_from(b)
        ex, sym, nat = names[cid]
        return BookUpdate(ex, sym, nat, Delta.decode(memoryview(b)[ids_hdr.size:]), te, tr)

    books = [e for e in events if type(e) is BookUpdate]
    rows = []
    for label, enc, dec, sample in (
            ("inline names (wire.py), book delta", lambda e: wire.encode(e, 1), wire.decode, books),
            ("u16 channel id + table, book delta", ids_encode, ids_decode, books),
            ("inline names (wire.py), trade", lambda e: wire.encode(e, 1), wire.decode,
             [e for e in events if type(e) is Trade])):
        data = [enc(e) for e in sample]
        enc_t, dec_t = [], []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for e in sample:
                enc(e)
            t1 = time.perf_counter_ns()
            for d in data:
                dec(d)
            t2 = time.perf_counter_ns()
            enc_t.append((t1 - t0) / len(sample))
            dec_t.append((t2 - t1) / len(sample))
        rows.append((label, statistics.mean(len(d) for d in data), statistics.median(enc_t),
                     statistics.median(dec_t)))
    print("| envelope | mean bytes | encode ns (median of 5) | decode ns (median of 5) |")
    print("|---|---:|---:|---:|")
    for label, size, e, d in rows:
        print(f"| {label} | {size:.1f} | {e:,.0f} | {d:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="2000,20000", help="frames per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--spin", default="50,5000", help="strategy spin before sleeping, µs")
    ap.add_argument("--envelope", action="store_true", help="only the envelope comparison")
    args = ap.parse_args()
    if args.envelope:
        envelope()
        return
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} python={sys.version.split()[0]}")
    print("| transport | strategy spin µs | rate msg/s | deltas | p50 µs | p99 µs | p99.9 µs "
          "| p99 vs unix socket | hop p50 µs | hop p99 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rate in (int(r) for r in args.rates.split(",")):
        anchor_p99 = None
        for transport, spin in [("unix", 0.0)] + [("ring", float(s)) for s in args.spin.split(",")]:
            p50s, p99s, p999s, counts, h50s, h99s = [], [], [], [], [], []
            for _ in range(args.repeat):
                lat, hop = run(transport, rate, args.seconds, spin)
                lat, hop = lat / 1000.0, hop / 1000.0
                h50s.append(np.percentile(hop, 50))
                h99s.append(np.percentile(hop, 99))
                p50s.append(np.percentile(lat, 50))
                p99s.append(np.percentile(lat, 99))
                p999s.append(np.percentile(lat, 99.9))
                counts.append(len(lat))
            p99 = statistics.median(p99s)
            if transport == "unix":
                anchor_p99 = p99
            label = "unix socket (anchor)" if transport == "unix" else "shm ring (alphapulse.feed)"
            ratio = f"{p99 / anchor_p99:.2f}x" if anchor_p99 else "-"
            print(f"| {label} | {'-' if transport == 'unix' else f'{spin:g}'} | {rate:,} | "
                  f"{statistics.median(counts):,.0f} | {statistics.median(p50s):.1f} | {p99:.1f} | "
                  f"{statistics.median(p999s):.1f} | {ratio} | {statistics.median(h50s):.1f} | "
                  f"{statistics.median(h99s):.1f} |", flush=True)


if __name__ == "__main__":
    main()
