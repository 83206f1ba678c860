"""Slow ``/ws`` clients: dropped from every channel at once and closed with 1008.

A mixin of :class:`alphapulse.server.ws.WsFanout`.  Two triggers: a send queue that overflows
(:meth:`SlowClientsMixin._overflow`), and the watchdog (:meth:`SlowClientsMixin._watch`, a few
ticks a second while clients are connected), which closes a client that has had data waiting
and taken none of it (the kernel's acknowledged-byte count, :meth:`._ws_conn.Conn.acked`, did
not move) for ``slow_client_s``, or that reads but stays behind ``BEHIND_FACTOR`` times as long.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ._ws_send_queue import CLOSE_POLICY, _Client

# The /ws endpoint's logger: these closes are part of its story.
log = logging.getLogger("alphapulse.server.ws")

# A client closed for being slow gets its backlog then the 1008 close frame if it reads again
# within this long; then the connection is aborted (what it pins in the kernel is freed).
ABORT_AFTER_S = 30.0
SLOW_CLIENT_S = 2.0          # default deadline: data waiting, none of it taken for this long
# A client that reads, but never catches up, is closed once it has been behind (socket not
# drained at any watchdog tick) for this many deadlines.
BEHIND_FACTOR = 4


class SlowClientsMixin:
    """The slow-client half of the fan-out; the host class provides the attributes below."""

    _slow_s: float
    _tick_s: float
    _clients: set[_Client]
    _loop: asyncio.AbstractEventLoop | None
    _watch_handle: asyncio.TimerHandle | None
    _metrics: Any
    stats: dict[str, int]

    if TYPE_CHECKING:   # provided by ControlMixin
        def _drop_subscriptions(self, client: _Client) -> None: ...

    def _overflow(self, client: _Client) -> None:
        """Drop a client whose queue is full: out of every channel now, closed with 1008."""
        if client.closing:
            return
        self.stats["overflow_closed"] += 1
        self._close_slow(client, f"send queue overflow ({client.limit} messages): "
                                 f"client too slow")

    def _watch(self) -> None:
        """Watchdog tick: close every client that stopped taking data, or stays behind."""
        self._watch_handle = None
        now = time.monotonic()
        late = []
        for client in self._clients:
            if client.closing:
                continue
            conn = client.conn
            if conn.fast:
                if not conn.open():      # closed by the peer: the endpoint is ending it
                    continue
                backlog = conn.backlog()
                drained = backlog == 0
            else:
                backlog = 0
                drained = not client.queue and not client.in_send
            if drained:
                # The common case, and the cheap one: no TCP_INFO query.
                client.stuck_since = client.behind_since = None
                continue
            acked = conn.acked() if conn.fast else -1
            if client.behind_since is None:
                # First tick behind: counted as stuck from now until a later tick sees progress.
                client.behind_since = client.stuck_since = now
            elif acked >= 0 and acked != client.acked:
                client.stuck_since = None
            elif client.stuck_since is None:
                client.stuck_since = now
            client.acked = acked
            stuck = now - client.stuck_since if client.stuck_since is not None else 0.0
            behind = now - client.behind_since
            if stuck >= self._slow_s:
                late.append((client, f"took nothing for {stuck:.1f} s", backlog))
            elif behind >= self._slow_s * BEHIND_FACTOR:
                late.append((client, f"not drained for {behind:.1f} s", backlog))
        for client, what, backlog in late:
            self.stats["deadline_closed"] += 1
            self._close_slow(client, f"client too slow: {what}, {len(client.queue)} messages "
                                     f"dropped, {backlog // 1024} KiB unsent")
        if self._clients and self._loop is not None and not self._loop.is_closed():
            self._watch_handle = self._loop.call_later(self._tick_s, self._watch)

    def _close_slow(self, client: _Client, reason: str) -> None:
        """Out of every channel now; closed with 1008 and ``reason`` without waiting for it."""
        self._drop_subscriptions(client)
        client.queue.clear()
        client.closing = True
        client.slow = True
        client.close_reason = reason
        self.stats["slow_closed"] += 1
        if self._metrics is not None:
            self._metrics.websocket_disconnects.labels(reason="slow_client").inc()
        log.info("ws client closed (1008): %s", reason)
        if client.conn.fast:
            # The close frame goes behind what the transport holds; the sender may be parked on
            # a paused transport that will never resume, so it is cancelled, not woken.
            client.conn.close_now(CLOSE_POLICY, reason[:120], ABORT_AFTER_S)
            if client.sender is not None:
                client.sender.cancel()
        else:
            client.wake.set()
