"""A fake exchange for load tests: the capture once, then looped at a controlled message rate.

:class:`PacedReplayServer` is a :class:`ReplayServer` (same protocol, same handshake, same
first pass over the capture, so a collector connects to it with its normal code path) whose
client, once the capture is over, gets the capture's stream looped endlessly
(:mod:`alphapulse.replay.loop`) at ``rate`` messages per second.  The looped frames are
pre-serialised WebSocket frames written straight to the transport in large slices, every
``tick`` seconds as many as the rate has made due (the sleep between ticks is rounded up to
whole milliseconds, as the event loops' timers have them), so the fake exchange costs ~12% of
a core at 20,000 messages/s (on uvloop, which ``main`` runs when installed) and the collector,
not the driver, is what a load test measures.  ``stats()["ticks"]`` counts the ticks.

Pacing is honest about its limits: frames that fell due while the transport already held
``max_backlog`` unsent bytes (the client does not keep up) or while the driver itself was late
by more than ``max_burst`` seconds are not sent later as a burst; they are counted as
``skipped`` and the achieved rate is what ``stats()`` reports.

Control: ``GET /_load/rate?msgs=N`` sets the rate (messages/s; 0 = idle, only heartbeats) and
``GET /_load/stats`` returns the counters, both as JSON, on the same port as the exchange.
Run one per process: ``python -m alphapulse.replay.paced kraken capture.jsonl [--port N]``
prints ``{"ws_url": ..., "rest_url": ...}`` on one line and serves until SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response
from websockets.protocol import State

from .. import eventloop
from . import serve
from ._server import ReplayServer, Session
from .loop import Chunk, Looper, build_looper

__all__ = ["PacedReplayServer", "paced"]


class PacedReplayServer(ReplayServer):
    """See the module docstring.  ``rate`` may be changed at any time."""

    def __init__(self, *args: Any, trade_share: float | None = None, tick: float = 0.001,
                 max_backlog: int = 1 << 20, max_burst: float = 0.02, chunk: int = 256,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rate = 0.0
        self.trade_share = trade_share
        self.tick, self.max_backlog, self.max_burst, self.chunk_frames = \
            tick, max_backlog, max_burst, chunk
        # The sleep between ticks in whole milliseconds, what the stdlib loop does anyway (its
        # selector rounds a timeout up to the millisecond): uvloop's timers round to the
        # nearest millisecond, so a 0.5 ms sleep there would be none and the driver would spin.
        self._sleep = math.ceil(tick * 1000 - 1e-9) / 1000
        self._recorded: dict[Session, dict[int, Sequence[bytes | str]]] = {}
        self.last_recorded: dict[int, Sequence[bytes | str]] = {}   # of the last session looped
        self.looping = 0                     # sessions in the looped phase
        self.counters = dict.fromkeys(("frames", "trades", "books", "bytes", "skipped",
                                       "passes", "backlog_max", "ticks"), 0)
        self.error: str | None = None

    def stats(self) -> dict[str, Any]:
        """Counters since start, plus this process's CPU time and the clocks to rate them."""
        return {**self.counters, "rate": self.rate, "looping": self.looping,
                "error": self.error, "cpu_s": time.process_time(), "t": time.monotonic()}

    # ---- control over HTTP ----------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if not url.path.startswith("/_load/"):
            return super()._process_request(connection, request)
        if url.path == "/_load/rate":
            try:
                rate = float(dict(parse_qsl(url.query))["msgs"])
                if rate < 0:
                    raise ValueError(rate)
            except (KeyError, ValueError):
                return self._response(connection, 400, {}, b'{"error":"msgs: a rate >= 0"}')
            self.rate = rate
        elif url.path != "/_load/stats":
            return self._response(connection, 404, {}, b'{"error":"not found"}')
        return self._response(connection, 200, {}, json.dumps(self.stats()).encode())

    # ---- the looped phase -----------------------------------------------------------------
    def _sent(self, session: Session, index: int, out: Sequence[bytes | str]) -> None:
        if out:
            self._recorded.setdefault(session, {})[index] = out

    async def _after_capture(self, session: Session) -> None:
        recorded = self.last_recorded = self._recorded.pop(session, {})
        try:
            looper = build_looper(self, session, recorded, self.trade_share)
        except (ValueError, KeyError, TypeError) as exc:
            self.error = f"cannot loop this capture: {exc}"
            await super()._after_capture(session)
            return
        self.looping += 1
        try:
            await self._pace(session, looper)
        finally:
            self.looping -= 1

    async def _pace(self, session: Session, looper: Looper) -> None:
        transport = session.ws.transport
        counters = self.counters
        chunk: Chunk | None = None            # rendered when needed (see the idle branch)
        at = 0                                # next frame of the chunk
        rate, anchor, owed_base = -1.0, 0.0, 0   # owed = rate * (now - anchor) - sent since
        sent = 0
        idle_at = time.monotonic()
        # Stop at the closing handshake too: websockets half-closes (write_eof) the transport
        # before is_closing() says so, and a write after that raises.
        while not transport.is_closing() and session.ws.state is State.OPEN:
            now = time.monotonic()
            if self.rate != rate:
                rate, anchor, owed_base = self.rate, now, sent
            if rate <= 0:
                if chunk is not None:
                    # Finish the rendered chunk first: its numbers are already taken, and the
                    # session's own idle frames continue after them.
                    sent += self._write(transport, chunk, at, len(chunk.ends) - at)
                    chunk = None
                if now - idle_at >= self.heartbeat_interval:
                    idle_at = now
                    idle = session.idle_frame()
                    if idle is not None:
                        await session.send(idle)
                await asyncio.sleep(0.02)
                continue
            counters["ticks"] += 1
            due = int((now - anchor) * rate) - (sent - owed_base)
            late = due - int(rate * self.max_burst)
            backlog = transport.get_write_buffer_size()
            counters["backlog_max"] = max(counters["backlog_max"], backlog)
            if backlog > self.max_backlog:
                late = due
            if late > 0:                      # not sent later as a burst: skipped
                counters["skipped"] += late
                owed_base -= late
                due -= late
            while due > 0:
                if chunk is None or at == len(chunk.ends):
                    chunk, at = looper.chunk(self.chunk_frames), 0
                    counters["passes"] = looper.passes
                take = self._write(transport, chunk, at, min(due, len(chunk.ends) - at))
                sent += take
                due -= take
                at += take
            await asyncio.sleep(self._sleep)

    def _write(self, transport: Any, chunk: Chunk, at: int, take: int) -> int:
        """Write frames ``at .. at+take-1`` of ``chunk`` in one call; count them."""
        if take <= 0:
            return 0
        last = at + take - 1
        begin = chunk.ends[at - 1] if at else 0
        end = chunk.ends[last]
        transport.write(memoryview(chunk.buf)[begin:end])
        counters = self.counters
        counters["frames"] += take
        counters["bytes"] += end - begin
        counters["trades"] += chunk.trades[last] - (chunk.trades[at - 1] if at else 0)
        counters["books"] += chunk.books[last] - (chunk.books[at - 1] if at else 0)
        return take


def paced(exchange: str, files: Sequence[str | Path], *, host: str = "127.0.0.1",
          port: int = 0, trade_share: float | None = None, **options: Any) -> PacedReplayServer:
    """Like :func:`alphapulse.replay.serve`, the capture served by a :class:`PacedReplayServer`
    (first pass as fast as the client reads, then the loop at ``.rate``)."""
    plain = serve(exchange, list(files), host=host, port=port, max_rate=True)
    return PacedReplayServer(plain.exchange, host=host, port=port, max_rate=True,
                             times=None, trade_share=trade_share, **options)


async def _main(args: argparse.Namespace) -> None:
    server = paced(args.exchange, args.files, host=args.host, port=args.port,
                   trade_share=args.trade_share, tick=args.tick)
    server.rate = args.rate
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(json.dumps({"ws_url": server.ws_url, "rest_url": server.rest_url}), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alphapulse.replay.paced",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("exchange", choices=("coinbase", "kraken", "binanceus"))
    ap.add_argument("files", nargs="+")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.0, help="initial messages/s of the loop")
    ap.add_argument("--tick", type=float, default=0.001,
                    help="seconds between writes (each writes every frame then due); the sleep "
                         "is rounded up to whole milliseconds")
    ap.add_argument("--trade-share", type=float, default=None,
                    help="repeat trades until they are this fraction of the looped messages")
    # uvloop makes each tick's wakeup cheaper: the driver's CPU is taken from the server it
    # measures on a small machine.
    ap.add_argument("--loop", choices=eventloop.LOOPS, default="auto",
                    help="event loop (auto: uvloop when installed)")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(_main(args), args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
