"""Binary WebSocket frames for book channels.

A binary book frame is ``Delta.encode()`` inside the record envelope of :mod:`alphapulse.wire`
(the same bytes strategies read from the shared-memory rings), so one decoder serves both.
Until/unless the wire module offers an envelope encoder, the frame is the bare
``Delta.encode()`` (which carries exchange, symbol, sequence and the changes itself).
"""
from __future__ import annotations

import time
from typing import Any

try:   # the feed engineer's envelope; optional so the server works without it
    from .. import wire as _wire
except ImportError:   # pragma: no cover - depends on what has landed
    _wire = None


def _envelope(kind: str, exchange: str, symbol: str, delta: Any, ts_event: int,
              ts_recv: int) -> bytes | None:
    encoder = getattr(_wire, "encode_book", None) if _wire is not None else None
    if encoder is None:
        return None
    try:
        return encoder(kind, exchange, symbol, delta, ts_event, ts_recv, time.time_ns())
    except TypeError:   # a different signature than expected: fall back to the bare delta
        return None


def encode_book(event: Any) -> bytes:
    """The binary frame for a BookSnapshot/BookUpdate event."""
    delta = event.delta
    kind = "snapshot" if delta.is_snapshot else "delta"
    framed = _envelope(kind, event.exchange, event.symbol, delta, event.ts_event, event.ts_recv)
    return framed if framed is not None else delta.encode()


def encode_delta(exchange: str, symbol: str, delta: Any) -> bytes:
    """The binary frame for a snapshot taken on request (no exchange timestamps)."""
    framed = _envelope("snapshot", exchange, symbol, delta, 0, 0)
    return framed if framed is not None else delta.encode()
