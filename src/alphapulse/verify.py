"""``verify``: run a capture through the real parser and book, and summarise what it shows.

The parser is the exchange collector's own sans-IO class (``exchanges.get_parser``), so a
capture that verifies here is handled the same way by the live collector.  Offline there is no
exchange to resubscribe to: after a gap the parser carries on from its local book (the next
checksum or sequence check says whether that was right) and only a later snapshot in the
capture counts as recovering the book.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .capture import read_capture
from .events import BookSnapshot, Event, Gap
from .exchanges import get_parser

__all__ = ["SUMMARY_KEYS", "Verification", "verify", "verify_frames"]

SUMMARY_KEYS = ("messages", "trades", "books", "snapshots", "updates", "checksum_ok",
                "checksum_failed", "gaps", "resyncs", "rejected", "top", "elapsed_s")


@dataclass
class Verification:
    """``summary`` has exactly SUMMARY_KEYS; ``unrecovered`` lists books still untrusted."""

    summary: dict[str, Any]
    unrecovered: list[str] = field(default_factory=list)
    protocol: str | None = None

    @property
    def consistent(self) -> bool:
        """No checksum failure and every book gap recovered by a later snapshot."""
        return self.summary["checksum_failed"] == 0 and not self.unrecovered


def verify_frames(exchange: str, frames: Iterable[tuple[bytes, int | None]],
                  **parser_options: Any) -> Verification:
    """``frames``: (raw frame, receive ns or None) pairs, in capture order."""
    untrusted: set[str] = set()

    def watch(event: Event) -> None:
        if type(event) is Gap and event.reason != "trade_id":
            if event.symbol:
                untrusted.add(event.symbol)
            else:
                untrusted.update(parser.books)
        elif type(event) is BookSnapshot:
            untrusted.discard(event.symbol)

    parser = get_parser(exchange)(None, sink=watch, **parser_options)
    now = time.time_ns()
    start = time.perf_counter()
    feed = parser.feed
    for frame, ts_recv in frames:
        feed(frame, ts_recv or now)
        if parser.pending_resync:
            for symbol in parser.take_resyncs():
                for s in ([symbol] if symbol else list(parser.books)):
                    parser.resume_offline(s)
    elapsed = time.perf_counter() - start
    stats = parser.stats()
    top = {}
    for symbol, book in sorted(parser.books.items()):
        bid, ask = book.best_bid(), book.best_ask()
        top[symbol] = {"bid": bid[0] if bid else None, "ask": ask[0] if ask else None}
    summary = {key: stats[key] for key in SUMMARY_KEYS[:-2]}
    summary["rejected"] = dict(sorted(stats["rejected"].items()))
    summary["top"] = top
    summary["elapsed_s"] = round(elapsed, 6)
    return Verification(summary, sorted(untrusted), getattr(parser, "protocol", None))


def verify(exchange: str, files: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
           **parser_options: Any) -> Verification:
    """Verify one or more capture files (raw or envelope JSON Lines), in the order given."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = list(files)

    def frames() -> Iterable[tuple[bytes, int | None]]:
        for path in paths:
            for rec in read_capture(path):
                yield rec.frame, rec.ts_recv

    return verify_frames(exchange, frames(), **parser_options)
