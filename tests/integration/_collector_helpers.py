"""Shared pieces of the collector integration tests (test_{kraken,coinbase,binanceus}_collector):
run a real collector against a real replay server on loopback until everything the server sent
was processed, and read the generated fixtures' truth files.

Not a test module (no ``test_`` prefix); imported as a sibling module like ``_feed_procs``.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from alphapulse.events import Trade
from alphapulse.exchanges.base import MarketDataCollector
from alphapulse.replay import ReplayServer


def truth(fixtures_dir: Path, name: str) -> dict:
    """The ``generated/<name>.truth.json`` facts of a generated capture."""
    return json.loads((fixtures_dir / "generated" / f"{name}.truth.json").read_text())


async def run_until_drained(server: ReplayServer, collector: MarketDataCollector, *,
                            timeout: float, settle: float,
                            expected: Callable[[], int] | None = None,
                            live: Callable[[], Any] | None = None) -> None:
    """Run ``collector`` until it processed everything ``server`` sent, then stop it.

    Done when the collector's message count reaches ``expected()`` (default: the frames the
    server sent) and ``live()`` is true (default: always), or when the count stopped moving for
    ``settle`` seconds while ``live()`` (frames lost in a dropped connection never arrive), or
    after ``timeout`` seconds.  The collector is always stopped and its task awaited.
    """
    expected = expected or (lambda: server.messages_sent)
    live = live or (lambda: True)
    task = asyncio.create_task(collector.run())
    try:
        await server.wait_done(timeout)
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            seen = collector.stats["messages"]
            is_live = live()
            if seen >= expected() and is_live:
                break
            if seen != last:
                last, since = seen, time.monotonic()
            elif time.monotonic() - since > settle and is_live:
                break                       # frames lost in a dropped connection
    finally:
        await collector.stop()
        await asyncio.wait_for(task, 10)


def all_books_live(collector: MarketDataCollector) -> bool:
    """At least one book, and every book in state ``live``."""
    return bool(collector.books) and all(collector.state(s) == "live" for s in collector.books)


def tob(c: MarketDataCollector, symbol: str) -> tuple[Decimal, Decimal]:
    """(best bid, best ask) prices of ``symbol``'s book as Decimals (precision-independent)."""
    book = c.books[symbol]
    return Decimal(book.best_bid()[0]), Decimal(book.best_ask()[0])


def assert_truth(c: MarketDataCollector, t: dict) -> None:
    """BTC-USD's final top of book matches the truth file and the book is live."""
    assert tob(c, "BTC-USD") == (Decimal(t["final_best_bid"]), Decimal(t["final_best_ask"]))
    assert c.state("BTC-USD") == "live"


def trade_ids(events: list) -> list[int]:
    """The trade ids of the Trade events, in order."""
    return [int(e.trade_id) for e in events if isinstance(e, Trade)]
