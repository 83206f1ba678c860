"""The control protocol between a strategy and the server's shm publisher.

Requests and replies are single-line JSON objects over the Unix-domain socket
``<shm dir>/alphapulse-<name>/control.sock``::

    {"op": "attach", "channels": [...], "capacity": 4194304, "client": "top_of_book"}
        -> {"ok": true, "ring": "sub-1-4242.ring", "id": 1, "channels": [...],
            "server_pid": 4141, "heartbeat_ms": 250}
    {"op": "subscribe" | "unsubscribe", "channels": [...]}  -> {"ok": true, "channels": [...]}
    {"op": "resync", "books": [["kraken", "BTC-USD"]] | null} -> {"ok": true}
    {"op": "channels"}                                -> {"ok": true, "available": [...]}
    any error                                         -> {"ok": false, "error": "..."}

Channels: ``book:<exchange>:<symbol>``, ``trades:<exchange>:<symbol>`` and
``arbitrage:<symbol>``; ``*`` matches any exchange or symbol.  Both ends import the names and
helpers below (``alphapulse.server.shm`` is the other end).
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Final

from .. import ring
from ..errors import FeedError

DIR_PREFIX: Final = "alphapulse-"
CONTROL_SOCKET: Final = "control.sock"
SERVER_INFO: Final = "server.json"
RING_SUFFIX: Final = ".ring"
MAX_MESSAGE: Final = 64 * 1024
DEFAULT_CAPACITY: Final = 1 << 22          # 4 MiB per strategy: ~50k book deltas of slack
MIN_CAPACITY: Final = 1 << 16
MAX_CAPACITY: Final = 1 << 28
CHANNEL_KINDS: Final = ("book", "trades", "arbitrage")
WILDCARD: Final = "*"


def feed_dir(name: str = "default", directory: str | os.PathLike[str] | None = None) -> Path:
    """The directory of server ``name``: ``<directory>/alphapulse-<name>``.

    ``directory`` defaults to ``$ALPHAPULSE_SHM_DIR``, else /dev/shm (the server's --shm-dir)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad feed name {name!r}")
    base = Path(directory) if directory is not None else Path(
        os.environ.get("ALPHAPULSE_SHM_DIR") or ring.DEFAULT_DIR)
    return base / f"{DIR_PREFIX}{name}"


def parse_channel(text: str) -> tuple[str, str, str]:
    """``"book:kraken:BTC-USD"`` -> ``("book", "kraken", "BTC-USD")``;
    ``"arbitrage:BTC-USD"`` -> ``("arbitrage", "*", "BTC-USD")``.  ValueError names the problem."""
    if not isinstance(text, str):
        raise ValueError(f"channel must be a string, got {text!r}")
    parts = text.split(":")
    if parts[0] == "arbitrage" and len(parts) == 2 and parts[1]:
        return ("arbitrage", WILDCARD, parts[1])
    if len(parts) != 3 or parts[0] not in ("book", "trades") or not parts[1] or not parts[2]:
        raise ValueError(f"bad channel {text!r}: expected book:<exchange>:<symbol>, "
                         "trades:<exchange>:<symbol> or arbitrage:<symbol> ('*' matches any)")
    return (parts[0], parts[1], parts[2])


def format_channel(key: tuple[str, str, str]) -> str:
    """The inverse of :func:`parse_channel`."""
    kind, exchange, symbol = key
    return f"arbitrage:{symbol}" if kind == "arbitrage" else f"{kind}:{exchange}:{symbol}"


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    """One request or reply: compact JSON and a newline."""
    sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")


def recv_message(sock: socket.socket) -> dict[str, Any]:
    """Read one reply line (blocking, under the socket's timeout) as a JSON object."""
    chunks = bytearray()
    while not chunks.endswith(b"\n"):
        chunk = sock.recv(MAX_MESSAGE)
        if not chunk:
            raise ConnectionResetError("server closed the control connection")
        chunks += chunk
        if len(chunks) > MAX_MESSAGE:
            raise FeedError("control reply too long")
    reply = json.loads(chunks)
    if type(reply) is not dict:
        raise FeedError(f"control reply is not an object: {reply!r}")
    return reply
