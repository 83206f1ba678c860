"""Server footprint: CPU at a realistic feed rate and memory with full trade stores.

Issue 5's targets for 3 exchanges x 10 symbols: RSS under 500 MB in total, and under 20% of
one core at about 2,000 messages/s.  Two measurements:

1. **Realistic rate, real processes.**  The generated clean capture of each exchange is cloned
   to 10 symbols (the symbol text rewritten; Binance.US update ids offset per symbol so each
   REST snapshot belongs to one symbol), served by three ``alphapulse replay`` processes at the
   speed that gives ``--rate`` messages/s in total, into one ``alphapulse-server`` (single
   process, default settings).  After the books are live, the server's CPU % and RSS are
   sampled for ``--seconds``; the message rate is read from its own ``/metrics``.
2. **Trade stores at capacity, in process.**  The server's runtime (store + OHLCV, arbitrage,
   WebSocket fan-out, metrics) for the same 30 pairs is fed synthetic trades until every pair
   holds ``trades_per_symbol`` (100,000 by default), next to 30 deep books; RSS before and
   after says what full stores cost on top of the running server.

    .venv/bin/python benchmarks/server_footprint.py [--rate 2000] [--seconds 60]

Prints a markdown table.  Run it alone (``flock /tmp/ap-bench.lock ...``): CPU % is noisy.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import psutil

from alphapulse import OrderBook
from alphapulse.events import Trade
from alphapulse.replay import exchange_class
from alphapulse.server.config import load_config
from alphapulse.server.runtime import Runtime

GENERATED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "generated"
EXCHANGES = ("coinbase", "kraken", "binanceus")
# ETH-USD is avoided: its known precisions (symbols.py) differ from the cloned BTC prices'.
BASES = ("BTC", "SOL", "ADA", "DOT", "LTC", "LINK", "AVAX", "XRP", "UNI", "ATOM")
SYMBOLS = tuple(f"{b}-USD" for b in BASES)
_IDS = re.compile(rb'"(U|u|lastUpdateId)":(\d+)')
_CB_TIMESTAMP = re.compile(rb'"timestamp":"[^"]*"')
_CB_SEQUENCE = re.compile(rb'"sequence_num":\s*\d+')
COINBASE_SPAN_S = 160.0     # the generated Coinbase capture has one timestamp: spread it out


def _clone_line(exchange: str, line: bytes, k: int, base: str) -> bytes:
    """One capture line rewritten for the k-th symbol (the captures are BTC-USD only)."""
    line = line.replace(b"BTC", base.encode()).replace(b"btc", base.lower().encode())
    if exchange == "binanceus":   # disjoint id ranges: a REST body must bridge one symbol only
        line = _IDS.sub(lambda m: b'"%s":%d' % (m[1], int(m[2]) + k * 10**11), line)
    return line


def _coinbase_time(i: int, n: int) -> bytes:
    ms = int(i * COINBASE_SPAN_S * 1000 / n)
    return b'"timestamp":"2026-11-27T10:%02d:%02d.%03d000000Z"' % (ms // 60000, ms // 1000 % 60,
                                                                  ms % 1000)


def _merged_instrument(line: bytes) -> bytes:
    msg = orjson.loads(line)
    data = msg["data"]
    data["assets"] = [dict(a, id=a["id"].replace("BTC", b)) for b in BASES for a in data["assets"]
                      if a["id"] == "BTC"] + [a for a in data["assets"] if a["id"] != "BTC"]
    data["pairs"] = [orjson.loads(_clone_line("kraken", orjson.dumps(p), 0, b))
                     for b in BASES for p in data["pairs"]]
    return orjson.dumps(msg)


def clone_captures(directory: Path) -> tuple[dict[str, Path], float]:
    """The 10-symbol captures, and their total messages/s at replay speed 1."""
    out, rate = {}, 0.0
    for exchange in EXCHANGES:
        lines = (GENERATED / f"{exchange}-clean.jsonl").read_bytes().splitlines()
        cloned = []
        for i, line in enumerate(lines):
            if b'"channel":"instrument"' in line:    # Kraken lists every pair in one snapshot
                cloned.append(_merged_instrument(line))
                continue
            if exchange == "coinbase":
                line = _CB_TIMESTAMP.sub(_coinbase_time(i, len(lines)), line, count=1)
            cloned += [_clone_line(exchange, line, k, base) for k, base in enumerate(BASES)]
        if exchange == "coinbase":   # one connection-wide counter, as the exchange numbers it
            cloned = [_CB_SEQUENCE.sub(b'"sequence_num":%d' % i, line, count=1)
                      for i, line in enumerate(cloned)]
        path = directory / f"{exchange}-10.jsonl"
        path.write_bytes(b"\n".join(cloned) + b"\n")
        replay = exchange_class(exchange)(cloned)
        times = [t for i, f in enumerate(cloned) if (t := replay.frame_time(i, f)) is not None]
        rate += len(cloned) / (times[-1] - times[0])
        out[exchange] = path
    return out, rate


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric_total(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def _messages(api: int) -> float:
    """Trades + book snapshots and updates the server has processed (its own counters)."""
    text = _get(f"http://127.0.0.1:{api}/metrics").decode()
    return sum(_metric_total(text, name) for name in (
        "alphapulse_trades_processed_total", "alphapulse_book_updates_total",
        "alphapulse_book_snapshots_total"))


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read()
    except urllib.error.HTTPError as exc:     # /health answers 503 with its JSON body
        return exc.read()


def realistic_rate(rate: float, seconds: float) -> dict[str, float]:
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        captures, native_rate = clone_captures(Path(tmp))
        speed = rate / native_rate
        urls, rest = {}, {}
        try:
            for exchange, path in captures.items():
                replay = subprocess.Popen(
                    [sys.executable, "-m", "alphapulse.cli", "replay", "--exchange", exchange,
                     "--speed", f"{speed:.4f}", str(path)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                procs.append(replay)
                assert replay.stdout is not None   # "... frames: ws URL  rest URL" once listening
                words = replay.stdout.readline().decode().split()
                urls[exchange] = words[words.index("ws") + 1]
                rest[exchange] = words[words.index("rest") + 1]
            api = _free_port()
            args = [sys.executable, "-m", "alphapulse.server.cli", "--exchanges", ",".join(EXCHANGES),
                    "--symbols", ",".join(SYMBOLS), "--port", str(api), "--log-level", "warning",
                    "--shm-dir", tmp, "--name", "footprint",
                    "--binanceus-rest-url", rest["binanceus"]]
            for exchange, url in urls.items():
                args += [f"--{exchange}-ws-url", url]
            server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(server)
            ps = psutil.Process(server.pid)
            time.sleep(10.0)                       # connect, snapshots, warm-up
            before = _messages(api)
            started = time.monotonic()
            ps.cpu_percent()
            cpu, rss = [], []
            while time.monotonic() - started < seconds:
                time.sleep(2.0)
                cpu.append(ps.cpu_percent())
                rss.append(ps.memory_info().rss / 2**20)
            messages = _messages(api) - before
            elapsed = time.monotonic() - started
            health = orjson.loads(_get(f"http://127.0.0.1:{api}/health"))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return {"msgs_per_s": messages / elapsed, "cpu_median": statistics.median(cpu),
            "cpu_max": max(cpu), "rss_max": max(rss), "health": health}


def stores_at_capacity() -> dict[str, float]:
    ps = psutil.Process()
    config = load_config({"exchanges": ",".join(EXCHANGES), "symbols": ",".join(SYMBOLS)}, env={})
    runtime = Runtime(config)
    for sub in (runtime.store, runtime.detector, runtime.ws, runtime.metrics):
        runtime.hub.subscribe(sub)
    books = []
    for exchange in EXCHANGES:
        for symbol in SYMBOLS:      # deep books: 5,000 levels a side (Coinbase BTC-USD: ~23k)
            book = OrderBook(symbol, 2, 8, exchange=exchange)
            book.snapshot([(f"{50000 - i * 0.01:.2f}", "0.5") for i in range(5000)],
                          [(f"{50001 + i * 0.01:.2f}", "0.5") for i in range(5000)])
            books.append(book)
    rss_before = ps.memory_info().rss / 2**20
    per_pair = config.trades_per_symbol
    publish = runtime.hub.publish
    ts = time.time_ns() - per_pair * 10**8
    for exchange in EXCHANGES:
        for symbol in SYMBOLS:
            native = symbol.replace("-", "")
            for i in range(per_pair):
                t = ts + i * 10**8
                publish(Trade(exchange, symbol, native, f"{50000 + (i % 997) * 0.37:.2f}",
                              f"0.{i % 99991:05d}", "buy" if i & 1 else "sell", str(i), t, t))
    rss_after = ps.memory_info().rss / 2**20
    stored = sum(p["trades_stored"] for p in runtime.store.summary()["pairs"])
    return {"rss_before": rss_before, "rss_after": rss_after, "stored": stored,
            "bytes_per_trade": (rss_after - rss_before) * 2**20 / max(stored, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="total messages/s (default 2000)")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    live = realistic_rate(args.rate, args.seconds)
    full = stores_at_capacity()
    total = live["rss_max"] + full["rss_after"] - full["rss_before"]
    print("| measurement | value | target |")
    print("|---|---:|---:|")
    print(f"| messages/s delivered (3 exchanges x 10 symbols) | {live['msgs_per_s']:,.0f} | ~2,000 |")
    print(f"| server CPU %, median of 2 s samples (max) | {live['cpu_median']:.1f} "
          f"({live['cpu_max']:.1f}) | < 20 |")
    print(f"| server RSS at that rate, MiB | {live['rss_max']:.1f} | |")
    print(f"| trade stores filled: trades held | {full['stored']:,} | |")
    print(f"| RSS added by full stores, MiB ({full['bytes_per_trade']:.0f} B/trade) | "
          f"{full['rss_after'] - full['rss_before']:.1f} | |")
    print(f"| server RSS with full stores (sum), MiB | {total:.1f} | < 500 |")
    print(f"\n/health at the end of the run: {orjson.dumps(live['health']).decode()[:2000]}")


if __name__ == "__main__":
    main()
