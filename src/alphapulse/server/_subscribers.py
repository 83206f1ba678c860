"""One attached strategy as the shm publisher sees it, and the channel-filter match."""
from __future__ import annotations

import time
from typing import Any

from ..feed import WILDCARD, format_channel
from ..ring import RingWriter


class Subscriber:
    """A strategy's ring, its channel filter and its recovery state.

    ``stale`` holds the (exchange, symbol) books whose next record for this strategy must be a
    fresh snapshot (new subscriber, after a drop, after a gap, on request)."""

    __slots__ = ("id", "pid", "client", "writer", "channels", "stale", "overrun", "skipped", "overruns",
                 "records", "snapshots", "created", "reader_seen")

    def __init__(self, sid: int, pid: int, client: str, writer: RingWriter,
                 channels: set[tuple[str, str, str]]) -> None:
        self.id = sid
        self.pid = pid
        self.client = client
        self.writer = writer
        self.channels = channels
        self.stale: set[tuple[str, str]] = set()
        self.overrun = False       # inside a drop episode: writing nothing until drained
        self.skipped = 0           # records not written during the current episode
        self.overruns = 0          # drop episodes
        self.records = 0
        self.snapshots = 0
        self.created = time.monotonic()
        self.reader_seen = False

    def describe(self) -> dict[str, Any]:
        w = self.writer
        closed = w.closed
        return {"id": self.id, "pid": self.pid, "client": self.client, "ring": w.path,
                "channels": sorted(map(format_channel, self.channels)), "records": self.records,
                "dropped": w.dropped, "overruns": self.overruns, "snapshots": self.snapshots,
                "stale_books": len(self.stale),
                "backlog_bytes": 0 if closed else w.backlog, "capacity": w.capacity}


def matches(sub: Subscriber, kind: str, exchange: str, symbol: str) -> bool:
    """Does ``sub``'s filter take records of ``kind`` for ``exchange``/``symbol``?

    ``kind`` "gap" matches book and trades channels (a gap with symbol "" any channel of the
    exchange); "arbitrage" records have exchange "*"."""
    for k, e, s in sub.channels:
        if kind == "gap":
            if k == "arbitrage" or (e != WILDCARD and e != exchange):
                continue
            if not symbol or s == WILDCARD or s == symbol:
                return True
        elif k == kind and (e == WILDCARD or e == exchange) and (s == WILDCARD or s == symbol):
            return True
    return False
