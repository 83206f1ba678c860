"""Fake exchanges: serve captures on loopback, speaking each exchange's exact protocol.

``serve("kraken", ["capture.jsonl"])`` returns a :class:`ReplayServer`; use it as
``async with serve(...) as server:`` and point a collector at ``server.ws_url`` /
``server.rest_url``.  The exchange side lives in ``replay/<exchange>.py`` (module attribute
``EXCHANGE``: a :class:`ReplayExchange` subclass) and is written from the protocol documents and
captures, never from ``alphapulse.exchanges``, so a wrong assumption in a collector is caught
rather than mirrored.
"""
from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Iterable

from ..capture import read_capture
from ._server import Market, ReplayExchange, ReplayServer, Session
from .faults import Faults

EXCHANGES = ("coinbase", "kraken", "binanceus")

__all__ = ["EXCHANGES", "Faults", "Market", "ReplayExchange", "ReplayServer", "Session",
           "exchange_class", "serve"]


def exchange_class(exchange: str) -> type[ReplayExchange]:
    """The replay glue class of ``replay/<exchange>.py``."""
    if exchange not in EXCHANGES:
        raise ValueError(f"unknown exchange {exchange!r}; known: {', '.join(EXCHANGES)}")
    module = importlib.import_module(f"{__name__}.{exchange}")
    return module.EXCHANGE  # type: ignore[no-any-return]


def serve(exchange: str, files: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], *,
          host: str = "127.0.0.1", port: int = 0, speed: float | None = None,
          max_rate: bool = False, faults: Faults | None = None,
          sock: socket.socket | None = None, **options: object) -> ReplayServer:
    """A fake ``exchange`` serving ``files`` (raw or envelope JSON Lines, concatenated).

    ``speed`` scales the capture's own timing (1.0 = real time, the default); ``max_rate``
    sends as fast as the client reads.  ``sock`` is a pre-bound listening socket (tests).
    Not started yet: ``async with serve(...) as server`` or ``await server.start()``.
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    frames: list[bytes] = []
    times: list[int | None] = []
    for path in files:
        for rec in read_capture(path):
            frames.append(rec.frame)
            times.append(rec.ts_recv)
    glue = exchange_class(exchange)(frames)
    return ReplayServer(glue, host=host, port=port, speed=speed, max_rate=max_rate,
                        faults=faults, sock=sock, times=times, **options)  # type: ignore[arg-type]
