"""The shm publisher's lifetime: its directory, the loop hooks, the periodic work, detaching.

A mixin of :class:`~.shm.ShmPublisher` (kept apart so each file has one job).  ``start`` makes
``<shm dir>/alphapulse-<name>/`` (0700) with the control socket and ``server.json``, cleaning
what a killed server left there (only the files the publisher makes) and refusing a name a live
server uses; ``tick`` (every ``TICK_S``) writes recovery snapshots, heartbeats and sweeps dead
readers; ``close`` says goodbye to every strategy and removes the directory.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import selectors
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._ring import process_alive, process_start
from ..errors import FeedNameInUse
from ..feed.protocol import CONTROL_SOCKET, RING_SUFFIX, SERVER_INFO
from ..wire import Control, Heartbeat, encode
from ._subscribers import Subscriber

log = logging.getLogger("alphapulse.server.shm")

TICK_S = 0.05           # recovery snapshots and heartbeats are checked this often
SWEEP_S = 1.0           # dead-reader sweep
ATTACH_GRACE_S = 10.0   # a ring nobody attached to within this long is freed


class ShmLifetime:
    """Lifetime half of ShmPublisher (uses its directory, _sel, _subs, counters ...)."""

    name: str
    directory: Path
    heartbeat_s: float
    counters: dict[str, int]
    _sel: selectors.BaseSelector | None
    _listen: socket.socket | None
    _loop: asyncio.AbstractEventLoop | None
    _timer: asyncio.TimerHandle | None
    _subs: dict[int, Subscriber]
    _routes: dict[Any, Any]
    _next_heartbeat: float
    _next_sweep: float

    if TYPE_CHECKING:   # provided by the other halves (stubs here would shadow them: MRO)
        def _service(self, timeout: float) -> None: ...
        def _resume(self, sub: Subscriber, now: int) -> bool: ...
        def _recover(self, sub: Subscriber, key: tuple[str, str], ts_event: int,
                     ts_recv: int, now: int, sequence: int | None = None) -> bool: ...
        def _dropped(self, sub: Subscriber, now: int) -> None: ...

    # --- lifetime --------------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory (cleaning a dead server's leftovers) and the control socket.

        Raises FeedNameInUse when a live server already uses this name here."""
        d = self.directory
        d.parent.mkdir(parents=True, exist_ok=True)
        self._clean_stale(d)
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        path = d / CONTROL_SOCKET
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(32)
        sock.setblocking(False)
        self._listen = sock
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ, None)
        info = {"pid": os.getpid(), "start": process_start(os.getpid()), "name": self.name,
                "created_ns": time.time_ns()}
        tmp = d / f".{SERVER_INFO}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, d / SERVER_INFO)
        log.info("shared-memory feed %r at %s", self.name, d)

    def _clean_stale(self, d: Path) -> None:
        if not d.exists():
            return
        try:
            info = json.loads((d / SERVER_INFO).read_text())
            pid, start = int(info["pid"]), int(info["start"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, start = 0, 0
        live = bool(pid) and pid != os.getpid() and process_alive(pid, start)
        if not live and pid != os.getpid() and (d / CONTROL_SOCKET).exists():
            # No (readable) server.json, e.g. a server between bind and writing it: ask the socket.
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                probe.settimeout(0.5)
                probe.connect(str(d / CONTROL_SOCKET))
                live = True
            except OSError:
                pass
            finally:
                probe.close()
        if live:
            raise FeedNameInUse(errno.EEXIST, f"feed name {self.name!r} is in use by the live "
                                f"server pid {pid}; choose another --name", str(d))
        # A killed server's leftovers (or an unclosed publisher of this very process): only the
        # files we make, so a wrongly pointed --shm-dir can never delete anything else.
        for entry in d.iterdir():
            if entry.name in (CONTROL_SOCKET, SERVER_INFO) or entry.name.endswith(
                    (RING_SUFFIX, ".tmp")):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
        log.info("cleaned the stale feed directory %s (server pid %s is gone)", d, pid or "?")

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Serve the control socket and the periodic work from an asyncio loop."""
        assert self._sel is not None, "start() first"
        loop = loop or asyncio.get_running_loop()
        self._loop = loop
        loop.add_reader(self._sel.fileno(), self._service, 0.0)   # epoll fd: ready when any is
        self._timer = loop.call_later(TICK_S, self._on_timer)

    def _on_timer(self) -> None:
        try:
            self.tick()
        except Exception:   # the timer must survive anything
            log.exception("shm publisher tick failed")
        if self._loop is not None:
            self._timer = self._loop.call_later(TICK_S, self._on_timer)

    def poll(self, timeout: float = 0.0) -> None:
        """For hosts without asyncio: serve control requests for up to ``timeout`` s, then tick."""
        self._service(min(timeout, TICK_S))
        self.tick()

    def close(self) -> None:
        """Tell every strategy goodbye, close and unlink the rings, remove the directory."""
        if self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sel.fileno())   # type: ignore[union-attr]
            self._loop = None
        now = time.time_ns()
        for sub in list(self._subs.values()):
            with contextlib.suppress(Exception):
                sub.writer.write(encode(Control("bye", "server shutting down", now)))
            self._remove(sub, "server shutting down")
        if self._sel is not None:
            for key in list(self._sel.get_map().values()):
                with contextlib.suppress(Exception):
                    key.fileobj.close()   # type: ignore[union-attr]
            self._sel.close()
            self._sel = None
        self._listen = None
        with contextlib.suppress(OSError):
            info = json.loads((self.directory / SERVER_INFO).read_text())
            if info.get("pid") == os.getpid():
                shutil.rmtree(self.directory, ignore_errors=True)

    # --- periodic work ---------------------------------------------------------------------

    def tick(self) -> None:
        """Recovery snapshots for stale books, heartbeats, and the dead-reader sweep."""
        now = time.time_ns()
        mono = time.monotonic()
        beat = mono >= self._next_heartbeat
        if beat:
            self._next_heartbeat = mono + self.heartbeat_s
        for sub in list(self._subs.values()):
            if sub.overrun and not self._resume(sub, now):
                continue   # no heartbeat either: the reader has plenty to read
            for key in list(sub.stale):
                self._recover(sub, key, 0, now, now)
            if beat:
                w = sub.writer
                if w.capacity - w.backlog > 256:
                    if not w.write(encode(Heartbeat(os.getpid(), w.dropped, now))):
                        self._dropped(sub, now)
        if mono >= self._next_sweep:
            self._next_sweep = mono + SWEEP_S
            for sub in list(self._subs.values()):
                if sub.writer.reader_attached:
                    sub.reader_seen = True
                elif sub.reader_seen or mono - sub.created > ATTACH_GRACE_S:
                    self._remove(sub, "reader gone")

    def _remove(self, sub: Subscriber, why: str) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        self._routes.clear()
        self.counters["detached"] += 1
        with contextlib.suppress(Exception):
            sub.writer.close()
        with contextlib.suppress(Exception):
            sub.writer.unlink()
        log.info("strategy %d (pid %d) removed: %s", sub.id, sub.pid, why)
