"""The shm publisher's control socket: accept strategies, parse requests, attach and answer.

A mixin of :class:`~.shm.ShmPublisher` (kept apart so each file has one job).  Everything
runs on the publisher's thread, from ``_service``: the listening socket and every connection
are in one selector whose epoll fd the asyncio loop watches (or ``poll()`` selects on).  The
request format is documented in :mod:`alphapulse.feed`.  A connection's end (EOF: the
strategy exited, crashed or was killed) frees its ring at once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from .. import ring
from ..feed.protocol import (DEFAULT_CAPACITY, MAX_CAPACITY, MAX_MESSAGE, MIN_CAPACITY,
                             RING_SUFFIX, WILDCARD, format_channel, parse_channel)
from ..wire import Control, encode
from ._subscribers import Subscriber, matches

log = logging.getLogger("alphapulse.server.shm")
_UCRED = struct.Struct("3i")


class _Conn:
    __slots__ = ("sock", "pid", "uid", "buf", "sub")

    def __init__(self, sock: socket.socket, pid: int, uid: int) -> None:
        self.sock, self.pid, self.uid = sock, pid, uid
        self.buf = bytearray()
        self.sub: Subscriber | None = None



class ControlSocket:
    """Control-socket half of ShmPublisher (uses its _sel, _listen, _subs, _natives ...)."""

    _sel: selectors.BaseSelector | None
    _listen: socket.socket | None
    _subs: dict[int, Subscriber]
    _routes: dict[Any, Any]
    _natives: dict[tuple[str, str], str]
    _next_id: int
    name: str
    directory: Any
    max_subscribers: int
    heartbeat_s: float
    counters: dict[str, int]

    if TYPE_CHECKING:   # provided by ShmPublisher's other halves (stubs would shadow them)
        def _remove(self, sub: Subscriber, why: str) -> None: ...
        def _recover(self, sub: Subscriber, key: tuple[str, str], ts_event: int,
                     ts_recv: int, now: int, sequence: int | None = None) -> bool: ...
        def available(self) -> list[str]: ...

    def _service(self, timeout: float) -> None:
        sel = self._sel
        if sel is None:
            return
        for key, _ in sel.select(timeout):
            if key.data is None:
                self._accept()
            else:
                self._readable(key.data)

    def _accept(self) -> None:
        assert self._listen is not None and self._sel is not None
        while True:
            try:
                sock, _ = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           _UCRED.size))
            conn = _Conn(sock, pid, uid)
            if uid != os.getuid() and uid != 0:   # the directory is 0700 anyway
                self._reply(conn, {"ok": False, "error": "permission denied: another user"})
                sock.close()
                continue
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(MAX_MESSAGE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._disconnect(conn)
            return
        conn.buf += data
        while True:
            line, sep, rest = conn.buf.partition(b"\n")
            if not sep:
                if len(conn.buf) > MAX_MESSAGE:
                    self._disconnect(conn)
                return
            conn.buf = bytearray(rest)
            if not self._reply(conn, self._request(conn, bytes(line))):
                self._disconnect(conn)
                return

    def _reply(self, conn: _Conn, message: dict[str, Any]) -> bool:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            return conn.sock.send(data) == len(data)   # tiny replies; a full buffer = bad peer
        except OSError:
            return False

    def _disconnect(self, conn: _Conn) -> None:
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        conn.sock.close()
        if conn.sub is not None:
            self._remove(conn.sub, "strategy detached")
            conn.sub = None

    def _request(self, conn: _Conn, line: bytes) -> dict[str, Any]:
        try:
            msg = json.loads(line)
            if type(msg) is not dict:
                raise ValueError("a request is a JSON object")
            op = msg.get("op")
            if op == "attach":
                return self._attach(conn, msg)
            sub = conn.sub
            if op == "channels":
                return {"ok": True, "available": self.available()}
            if sub is None:
                raise ValueError(f"{op!r} before attach")
            if op in ("subscribe", "unsubscribe"):
                keys = {parse_channel(c) for c in _channel_list(msg)}
                before = set(sub.channels)
                if op == "subscribe":
                    sub.channels.update(keys)
                else:
                    sub.channels.difference_update(keys)
                self._routes.clear()
                if op == "subscribe":
                    self._stale_new_books(sub, before)
                return {"ok": True, "channels": sorted(map(format_channel, sub.channels))}
            if op == "resync":
                books = msg.get("books")
                keys2 = (list(self._natives) if books is None
                         else [(str(b[0]), str(b[1])) for b in books])
                sub.stale.update(k for k in keys2 if matches(sub, "book", *k))
                return {"ok": True}
            raise ValueError(f"unknown op {op!r}")
        except (ValueError, TypeError, KeyError, IndexError, OSError) as exc:
            return {"ok": False, "error": str(exc)}

    def _attach(self, conn: _Conn, msg: dict[str, Any]) -> dict[str, Any]:
        if conn.sub is not None:
            raise ValueError("this connection is already attached")
        if len(self._subs) >= self.max_subscribers:
            raise ValueError(f"too many strategies attached ({self.max_subscribers})")
        channels = {parse_channel(c) for c in _channel_list(msg)}
        capacity = int(msg.get("capacity") or DEFAULT_CAPACITY)
        if capacity < MIN_CAPACITY or capacity > MAX_CAPACITY or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two in [{MIN_CAPACITY}, "
                             f"{MAX_CAPACITY}], got {capacity}")
        self._next_id += 1
        sid = self._next_id
        path = self.directory / f"sub-{sid}-{conn.pid}{RING_SUFFIX}"
        writer = ring.create(path, capacity, policy="drop", mode=0o600)
        sub = Subscriber(sid, conn.pid, str(msg.get("client", ""))[:64], writer, channels)
        now = time.time_ns()
        writer.write(encode(Control("hello", json.dumps({"server": self.name, "id": sid}), now)))
        self._subs[sid] = sub
        conn.sub = sub
        self._routes.clear()
        self.counters["attached"] += 1
        self._stale_new_books(sub, set())
        for key in list(sub.stale):   # first snapshots now, so they lead the ring
            self._recover(sub, key, 0, now, now)
        log.info("strategy %d (pid %d, %s) attached: %s", sid, conn.pid, sub.client,
                 ", ".join(sorted(map(format_channel, channels))))
        return {"ok": True, "ring": path.name, "id": sid, "server_pid": os.getpid(),
                "channels": sorted(map(format_channel, channels)),
                "heartbeat_ms": int(self.heartbeat_s * 1000)}

    def _stale_new_books(self, sub: Subscriber, before: set[tuple[str, str, str]]) -> None:
        """Books ``sub`` now gets and did not before start stale: a snapshot comes first."""
        for key in self._natives:
            if matches(sub, "book", *key) and not any(
                    k == "book" and e in (WILDCARD, key[0]) and s in (WILDCARD, key[1])
                    for k, e, s in before):
                sub.stale.add(key)


def _channel_list(msg: dict[str, Any]) -> list[str]:
    channels = msg.get("channels")
    if not isinstance(channels, list) or not channels or len(channels) > 1000:
        raise ValueError("'channels' must be a non-empty list of channel names")
    return channels
