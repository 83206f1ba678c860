"""Process bodies for tests/integration/test_feed.py (importable by spawned children).

``publisher_main`` plays the server: it owns live books like a collector does, emits
BookSnapshot/BookUpdate/Trade events into a real ShmPublisher, and serves its control socket.
``strategy_main`` is a strategy: it attaches by name and reports what its mirrors hold.
"""
from __future__ import annotations

import os
import random
import time
from typing import Any

BOOKS = [("kraken", "BTC-USD", "BTC/USD"), ("kraken", "ETH-USD", "ETH/USD"),
         ("coinbase", "BTC-USD", "BTC-USD")]


def book_state(book: Any) -> tuple[int, int, list, list]:
    return (book.sequence, book.checksum(), book.bids(), book.asks())


class Market:
    """Random but valid L2 books (bids 90.00-99.99, asks 100.01-110.00) and trades."""

    def __init__(self, seed: int) -> None:
        from alphapulse import OrderBook
        self.rng = random.Random(seed)
        self.books = {}
        for exchange, symbol, _native in BOOKS:
            book = OrderBook(symbol, 2, 8, exchange=exchange)
            book.sequence = self.rng.randrange(1000)
            self.books[(exchange, symbol)] = book
        self.natives = {(e, s): n for e, s, n in BOOKS}
        self.trade_id = 0

    def snapshots(self) -> list:
        from alphapulse.events import BookSnapshot
        out = []
        for key, book in self.books.items():
            bids = [(f"{9000 + i * 7 % 999 / 1:.0f}", "1.5") for i in range(40)]
            bids = [(f"{int(p) / 100:.2f}", s) for p, s in dict(bids).items()]
            asks = [(f"{(10001 + i * 11 % 999) / 100:.2f}", "2.25") for i in range(40)]
            delta = book.snapshot(bids, dict(asks).items())
            now = time.time_ns()
            out.append(BookSnapshot(key[0], key[1], self.natives[key], delta, now, now))
        return out

    def step(self) -> Any:
        from alphapulse.events import BookUpdate, Trade
        rng = self.rng
        key = rng.choice(list(self.books))
        now = time.time_ns()
        if rng.random() < 0.1:
            self.trade_id += 1
            return Trade(key[0], key[1], self.natives[key], f"{rng.randint(9000, 11000) / 100:.2f}",
                         f"{rng.randint(1, 10**8) / 10**8:.8f}", rng.choice(("buy", "sell")),
                         str(self.trade_id), now - 1000, now)
        book = self.books[key]
        changes = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                side, price = "bid", rng.randint(9000, 9999)
            else:
                side, price = "ask", rng.randint(10001, 11000)
            size = "0" if rng.random() < 0.3 else f"{rng.randint(1, 10**9) / 10**8:.8f}"
            changes.append((side, f"{price / 100:.2f}", size))
        delta = book.apply(changes)
        return BookUpdate(key[0], key[1], self.natives[key], delta, now - 5000, now)


def publisher_main(name: str, directory: str, conn: Any, seed: int = 1) -> None:
    from alphapulse.server.shm import ShmPublisher
    market = Market(seed)
    pub = ShmPublisher(name, directory=directory, books=lambda e, s: market.books.get((e, s)),
                       heartbeat_s=0.1, checksum_s=0.05)
    pub.start()
    for event in market.snapshots():
        pub.on_event(event)
    conn.send(("ready", os.getpid()))
    while True:
        while not conn.poll():
            pub.poll(0.01)
        command, *args = conn.recv()
        if command == "run":
            count, rate = args
            start = time.monotonic()
            for i in range(count):
                pub.on_event(market.step())
                if i % 50 == 49:
                    ahead = start + (i + 1) / rate - time.monotonic()
                    pub.poll(max(ahead, 0.0))
            conn.send(("state", {k: book_state(b) for k, b in market.books.items()},
                       pub.stats()))
        elif command == "gap":
            from alphapulse.events import Gap
            exchange, symbol = args
            pub.on_event(Gap(exchange, symbol, "sequence", "test gap", -1, time.time_ns()))
            conn.send(("ok",))
        elif command == "stats":
            conn.send(("stats", pub.stats()))
        elif command == "stop":
            pub.close()
            conn.send(("stopped",))
            return


def strategy_main(name: str, directory: str, channels: list[str], expect: list[tuple[str, str]],
                  capacity: int, slow_s: float, slow_events: int, out: Any, targets: Any,
                  spin_us: float = 50.0) -> None:
    from alphapulse.errors import ProducerGone
    from alphapulse.feed import Overrun, Resync, attach
    feed = attach(name, channels, directory=directory, capacity=capacity, spin_us=spin_us)
    out.put(("attached", os.getpid(), str(feed.ring_path)))
    notices: list[tuple[str, Any]] = []
    goal = None
    seen = 0
    try:
        while True:
            event = feed.next(timeout=0.05)
            if event is not None:
                seen += 1
                if isinstance(event, Overrun):
                    notices.append(("overrun", event.missed))
                elif isinstance(event, Resync):
                    notices.append(("resync", event.reason))
                if seen <= slow_events:
                    time.sleep(slow_s)
            if goal is None and not targets.empty():
                goal = targets.get()
            if goal is not None and all(
                    feed.synced(*key) and feed.book(*key).sequence == goal[key] for key in expect):
                out.put(("done", {key: book_state(feed.book(*key)) for key in expect},
                         dict(feed.stats), notices))
                break
    except ProducerGone as exc:
        out.put(("gone", time.time(), str(exc)))
    finally:
        feed.close()
