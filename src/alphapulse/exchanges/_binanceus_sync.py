"""Binance-style depth synchronisation: diff events aligned on a REST depth snapshot.

The documented procedure (binance-us-api-docs web-socket-streams.md; protocols.md §4):

1. open the stream and buffer the depth events;
2. fetch ``GET /api/v3/depth?symbol=X&limit=1000`` (off the read loop, rate limited);
3. drop buffered events with ``u <= lastUpdateId``;
4. the first event applied must straddle the snapshot: ``U <= lastUpdateId + 1 <= u`` (one
   real capture has ``U == lastUpdateId``, so it is ``<=``, not ``==``);
5. then every event must have ``U == previous u + 1``; otherwise the book is invalid: Gap,
   keep buffering, fetch a new snapshot and start again at 3.

If the buffered stream starts *after* ``lastUpdateId + 1`` (the snapshot is older than
anything we hold) the snapshot is useless: it is fetched again, without a gap being counted.

:class:`DepthSyncParser` is that state machine, sans-IO, as the base of
:class:`alphapulse.exchanges.binanceus.BinanceUSParser`, which parses and validates the
frames, owns the books' native names and keeps the in-order fast path (compiled scanner and
inline branch) that reads ``_last_u`` / ``_bridge`` / ``_states`` directly.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._book import OrderBook
from ..errors import BookError, ProtocolError
from ..symbols import instrument
from .parser import LIVE, RESYNCING, FeedParser

__all__ = ["DepthSyncParser"]


class DepthSyncParser(FeedParser):
    """Buffering, snapshot alignment and update-id continuity of ``U``/``u`` diff streams.

    A REST body names no symbol.  The collector says which one it asked for
    (``rest_symbol``); in a capture (verify) it is the symbol awaiting a snapshot whose
    buffered update ids meet the snapshot's ``lastUpdateId`` (or the next depth event's symbol
    when the body comes first).  ``max_buffer`` bounds the events held per symbol while no
    snapshot has come (the newest are kept); ``max_levels`` one snapshot's (or event's) levels.
    """

    def __init__(self, symbols: Iterable[str] | None = None, *, max_levels: int = 20_000,
                 max_buffer: int = 10_000, **kwargs: Any) -> None:
        super().__init__(symbols, **kwargs)
        self.max_levels, self.max_buffer = max_levels, max_buffer
        self.rest_symbol: str | None = None
        self._last_u: dict[str, int] = {}          # symbol -> last applied final update id
        self._bridge: set[str] = set()             # next event must straddle lastUpdateId+1
        self._buffer: dict[str, list[tuple[int, int, list[Any], int]]] = {}
        self._orphan: tuple[dict[str, Any], int] | None = None
        self._holes: dict[str, tuple[int, int]] = {}   # ids skipped by a symbol's last jump
        self._switch: dict[str, int] = {}          # last u before a planned reconnect
        self.dropped_before_snapshot = self.snapshot_retries = self.buffer_overflows = 0
        self.stale_snapshots = 0

    # ---- FeedParser hooks -----------------------------------------------------------------
    def reset_connection(self) -> None:
        self._buffer.clear()
        self._last_u.clear()
        self._bridge.clear()
        self._orphan = None
        self._holes.clear()

    def planned_switch(self, symbol: str) -> None:
        """Before a planned reconnect: remember where the update ids stood; the new snapshot
        (``_align``) tells whether ids were missed across the switch (a gap) or not."""
        self._states[symbol] = RESYNCING
        self._switch[symbol] = self._last_u.get(symbol, -1)

    def resume_offline(self, symbol: str) -> None:
        """Offline: carry on from the local book, applying what was buffered meanwhile."""
        book = self.books.get(symbol)
        if book is None or self._states.get(symbol) != RESYNCING:
            return
        self._states[symbol] = LIVE
        self._bridge.discard(symbol)
        last = self._last_u.get(symbol, -1)
        for first, final, changes, ts_event in self._buffer.pop(symbol, ()):
            if final <= last:
                continue
            try:
                applied = self.apply_update(book, changes, ts_event, ts_event)
            except BookError as exc:      # buffered unvalidated: reject it as feed() would
                self.reject(f"bad_{exc.field or 'level'}", str(exc), ts_event)
                continue
            if applied:
                last = self._last_u[symbol] = final

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(dropped_before_snapshot=self.dropped_before_snapshot,
                   snapshot_retries=self.snapshot_retries, buffer_overflows=self.buffer_overflows,
                   stale_snapshots=self.stale_snapshots)
        return out

    # ---- depth events and snapshots -------------------------------------------------------
    def _sync_depth(self, book: OrderBook, first: int, final: int, changes: list[Any],
                    ts_event: int, ts_recv: int) -> None:
        """A depth event off the in-order fast path: buffered, bridged or a gap (``_on_depth``);
        a snapshot body that came before any event is aligned once this one names its book."""
        self._on_depth(book, first, final, changes, ts_event, ts_recv)
        if self._orphan is not None and self._states.get(book.symbol) != LIVE:
            orphan, self._orphan = self._orphan, None
            self._align(book, orphan[0], orphan[1])

    def _on_depth(self, book: OrderBook, first: int, final: int, changes: list[Any],
                  ts_event: int, ts_recv: int) -> None:
        symbol = book.symbol
        if self._states.get(symbol) != LIVE:
            buf = self._buffer.setdefault(symbol, [])
            buf.append((first, final, changes, ts_event))
            if len(buf) > self.max_buffer:          # no snapshot for a long time: keep newest
                del buf[0]
                self.buffer_overflows += 1
            return
        last = self._last_u[symbol]
        if symbol in self._bridge:
            if final <= last:                       # older than the snapshot: already in it
                self.dropped_before_snapshot += 1
                return
            ok = first <= last + 1
        else:
            ok = first == last + 1
        if ok:
            if self.apply_update(book, changes, ts_event, ts_recv):
                self._last_u[symbol] = final
                self._bridge.discard(symbol)
            return
        hole = self._holes.get(symbol)
        if hole is not None and hole[0] <= first and final <= hole[1]:
            return                  # a straggler of the jump already reported: same incident
        if final <= last:
            detail, missed = f"update {first}..{final} after {last} (duplicate or out of order)", -1
        else:
            detail, missed = f"update ids {last + 1}..{first - 1} missed", first - last - 1
            self._holes[symbol] = (last + 1, first - 1)
        self.gap(symbol, "sequence", detail, missed, ts_recv)
        self._on_depth(book, first, final, changes, ts_event, ts_recv)    # now buffered

    def _snapshot(self, msg: dict[str, Any], ts_recv: int) -> None:
        last_id, bids, asks = msg["lastUpdateId"], msg["bids"], msg["asks"]
        if type(last_id) is not int or last_id < 0:
            raise ProtocolError("bad_update_id", f"lastUpdateId={last_id!r:.30}")
        if type(bids) is not list or type(asks) is not list:
            raise ProtocolError("malformed", "snapshot bids/asks are not lists")
        if len(bids) + len(asks) > self.max_levels:
            raise ProtocolError("too_many_levels", f"{len(bids) + len(asks)} levels")
        symbol = self.rest_symbol or self._snapshot_owner(last_id)
        if symbol is None:
            self._orphan = (msg, ts_recv)          # before any event: the next one tells
            return
        book = self.books.get(symbol) or self.book_for(instrument(self.exchange, symbol))
        self._align(book, msg, ts_recv)

    def _snapshot_owner(self, last_id: int) -> str | None:
        waiting = [s for s in self.books if self._states.get(s) != LIVE]
        if len(waiting) <= 1:
            return waiting[0] if waiting else (next(iter(self.books)) if len(self.books) == 1
                                               else None)

        def distance(symbol: str) -> int:
            events = self._buffer.get(symbol) or [(-1 << 62, -1 << 62, [], 0)]
            return min(0 if first <= last_id + 1 <= final else abs(first - last_id - 1)
                       for first, final, _, _ in events)
        return min(waiting, key=distance)

    def _align(self, book: OrderBook, msg: dict[str, Any], ts_recv: int) -> None:
        symbol, last_id = book.symbol, msg["lastUpdateId"]
        if self._states.get(symbol) == LIVE and last_id < self._last_u.get(symbol, -1):
            # A late answer for a book that is already live and further on: applying it
            # would take the book backwards.  (A newer one simply replaces the book.)
            self.stale_snapshots += 1
            return
        buffered = self._buffer.pop(symbol, [])
        kept = [ev for ev in buffered if ev[1] > last_id]
        if kept and kept[0][0] > last_id + 1:
            # Our stream starts after the snapshot: updates in between are in neither.
            self._buffer[symbol] = kept
            self.snapshot_retries += 1
            self._pending[symbol] = "stale_snapshot"
            return
        self.dropped_before_snapshot += len(buffered) - len(kept)
        before = self._switch.pop(symbol, -1)
        if before >= 0:
            # After a planned reconnect: ids neither the old stream nor the new one carried
            # (the new one starts at its first event, or after the snapshot if none came)
            # were missed; the snapshot repairs the book, but the deltas are not continuous.
            seen = buffered[0][0] if buffered else last_id + 1
            if seen > before + 1:
                self.gap(symbol, "reconnect", f"update ids {before + 1}..{seen - 1} missed "
                         "across a planned reconnect", seen - before - 1, ts_recv, request=False)
            else:
                self.resyncs += 1
        self.apply_snapshot(book, msg["bids"], msg["asks"], ts_recv, ts_recv)
        self._last_u[symbol] = last_id
        self._bridge.add(symbol)
        for first, final, changes, ts_event in kept:
            try:
                self._on_depth(book, first, final, changes, ts_event, ts_recv)
            except (ValueError, TypeError) as exc:    # a bad buffered event: skip it
                self.reject("bad_level", f"buffered update {first}..{final}: {exc}", ts_recv)
