"""What a parser does with a frame one of the compiled scanners (``_scan.pyx``) handled.

The scanner has already updated the book and built the BookUpdate; the parser still counts
the frame and emits the event exactly as its general path would, so counters, events and
gap reports cannot tell the two paths apart (``tests/unit/test_scan_equivalence.py``).
"""
from __future__ import annotations

from typing import Any

from ..events import BookUpdate
from ._scan import EventMaker
from .parser import _FRAME_ERRORS, FeedParser

__all__ = ["MAKE_BOOK_UPDATE", "deliver"]

# The scanners' BookUpdate constructor: slots written from C (a fifth of the dataclass cost).
MAKE_BOOK_UPDATE = EventMaker(BookUpdate)


def deliver(parser: FeedParser, hit: tuple[Any, bool], channel: str, ts_recv: int) -> None:
    """Count the frame (``messages``, ``activity[channel]``, ``updates``), emit the event and
    report a crossed book as a gap; an exception from the sink is counted as the general
    path counts it (``feed`` catches the same errors around ``parse``)."""
    parser.messages += 1
    activity = parser.activity
    activity[channel] = activity.get(channel, 0) + 1
    parser.updates += 1
    event = hit[0]
    try:
        parser.sink(event)
        if hit[1]:
            book = parser.books[event.symbol]
            parser.gap(event.symbol, "crossed", f"best bid {book.best_bid()} >= best ask "
                       f"{book.best_ask()}", -1, ts_recv)
    except _FRAME_ERRORS as exc:
        parser.frame_error(exc, ts_recv)
