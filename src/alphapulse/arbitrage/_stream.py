"""The asyncio face of the detector: an async iterator over its opportunities, and expiry."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ._opportunity import Opportunity

if TYPE_CHECKING:
    from ._detector import ArbitrageDetector


class OpportunityStream:
    """``async for opp in detector.stream()``: a callback that fills an ``asyncio.Queue``.

    Create it inside the event loop that will consume it.  ``on_event`` may run in that loop
    (then items are queued directly) or in another thread (then via
    ``call_soon_threadsafe``).  When the consumer falls ``maxsize`` behind, the oldest item is
    dropped and counted in ``dropped``.  ``close()`` (or leaving ``async with``) detaches it
    and ends the iteration.
    """

    def __init__(self, detector: ArbitrageDetector, maxsize: int = 1024) -> None:
        self._detector = detector
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue: asyncio.Queue[Opportunity | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        self._closed = False
        detector.callbacks.append(self._push)

    def _push(self, opp: Opportunity | None) -> None:
        if threading.get_ident() == self._thread:
            self._put(opp)
        else:
            self._loop.call_soon_threadsafe(self._put, opp)

    def _put(self, opp: Opportunity | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(opp)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._detector.callbacks.remove(self._push)
            except ValueError:
                pass
            self._push(None)

    def __aiter__(self) -> AsyncIterator[Opportunity]:
        return self

    async def __anext__(self) -> Opportunity:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def __aenter__(self) -> OpportunityStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def run_expiry(detector: ArbitrageDetector, interval_s: float = 0.5) -> None:
    """Call ``detector.expire()`` every ``interval_s`` until cancelled (run it as a task)."""
    while True:
        await asyncio.sleep(interval_s)
        detector.expire()
