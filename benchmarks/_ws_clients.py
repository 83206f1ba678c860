"""The client side of the WebSocket load driver: raw-socket clients in a worker process.

Used by ``benchmarks/_ws_load.py`` (which starts the server and the workers and reports).  On
a 2-core machine a load generator made of 500 ``websockets`` client objects in one asyncio loop
saturates long before the server does, and then measures itself.  So each worker is one
``epoll`` loop over non-blocking sockets with no asyncio and no per-message objects: read what
the socket has, split it into frames, pull every ``"ts_recv":<ns>`` out of the text payloads
with one regex.

Two latencies per message, both against ``ts_recv`` (when the server read the exchange frame;
same host clock):

* ``arrive``: the kernel's receive timestamp of the read (``SO_TIMESTAMPNS``; for TCP it is the
  time the last segment the read consumed entered the client's socket, which on loopback is
  the moment the server's ``send`` ran).  This is the server's delivery latency, without the
  time this driver takes to get round to the socket: a worker woken with 250 readable sockets
  reads the last one a few ms after the first.  Frames that came in earlier segments of the
  same read get the later stamp, so the figure errs high, never low.
* ``read``: the wall clock right after ``recvmsg`` returned, before any parsing: what a client
  program sharing the 2 cores with the server sees, the driver's own delay included.
"""
from __future__ import annotations

import contextlib
import re
import select
import socket
import struct
import time
from array import array
from multiprocessing.connection import Connection

STALLED_RCVBUF = 4096
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)    # Linux <asm-generic/socket.h>
_TIMESPEC = struct.Struct("qq")
_ANC = socket.CMSG_SPACE(_TIMESPEC.size)
_TS = re.compile(rb'"ts_recv":(\d+)')
_RECV = 1 << 18


def _client_frame(text: bytes) -> bytes:
    """A masked client text frame; the zero mask key leaves the payload as is (RFC 6455 allows
    any key; the server unmasks whatever it is)."""
    n = len(text)
    head = bytes((0x81, 0x80 | n)) if n < 126 else b"\x81\xfe" + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + text


def connect(port: int, path: str, subscribe: bytes, stalled: bool) -> socket.socket:
    """A handshaken, subscribed, non-blocking client socket with kernel receive timestamps."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if stalled:
        # Set before connect: the window the server sees is this small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(30)
    for attempt in range(5):          # a listen backlog overflowing under a connection storm
        try:
            sock.connect(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            if attempt == 4:
                raise
            time.sleep(0.2)
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("server closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head[:80]!r}")
    rest = head.split(b"\r\n\r\n", 1)[1]
    if rest:
        raise ConnectionError("data before the subscription")   # never happens: nothing sent yet
    sock.sendall(_client_frame(subscribe))
    sock.setblocking(False)
    return sock


class Client:
    """One client socket, its unparsed tail and how it ended."""

    __slots__ = ("sock", "buf", "stalled", "close_code", "close_reason", "closed_at", "eof")

    def __init__(self, sock: socket.socket, stalled: bool) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.stalled = stalled
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at = 0.0
        self.eof = False


def parse(client: Client, data: bytes, now: int, arrived: int, lat: array | None,
          arr: array | None) -> None:
    """Consume the complete frames in ``client.buf + data``; latencies (µs) go to ``lat``
    (read time ``now``) and ``arr`` (kernel arrival time ``arrived``, 0 if unknown).

    Hot path of the whole load generator (once per read per client), so: no copy when nothing
    was left over, a header walk per frame, and one regex over all the frames' bytes (the
    server sends the market data as JSON text frames)."""
    if client.buf:
        client.buf += data
        data = bytes(client.buf)
        client.buf.clear()
    pos = 0
    end = len(data)
    while end - pos >= 2:
        b1 = data[pos + 1] & 0x7F
        if b1 < 126:
            hdr, n = 2, b1
        elif b1 == 126:
            if end - pos < 4:
                break
            hdr, n = 4, int.from_bytes(data[pos + 2:pos + 4], "big")
        else:
            if end - pos < 10:
                break
            hdr, n = 10, int.from_bytes(data[pos + 2:pos + 10], "big")
        if end - pos < hdr + n:
            break
        opcode = data[pos] & 0x0F
        if opcode >= 8:                              # control frames
            payload = data[pos + hdr:pos + hdr + n]
            if opcode == 8:
                client.close_code = int.from_bytes(payload[:2], "big") if n >= 2 else 1005
                client.close_reason = payload[2:].decode(errors="replace")
                client.closed_at = time.time()
            elif opcode == 9:                        # the server's keepalive ping: answer it
                with contextlib.suppress(OSError):
                    client.sock.send(bytes((0x8A, 0x80 | n)) + b"\0\0\0\0" + payload)
        pos += hdr + n
    if lat is not None and pos:
        for ts in _TS.findall(data, 0, pos):
            t = int(ts)
            if t:
                lat.append((now - t) // 1000)
                if arrived:
                    arr.append((arrived - t) // 1000)
    if pos < end:
        client.buf += data[pos:]


def _arrival(anc: list) -> int:
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(raw)
            return sec * 1_000_000_000 + nsec
    return 0


def worker(port: int, path: str, subscribe: bytes, n_clients: int, n_stalled: int,
           ctl: Connection) -> None:
    """One worker process: ``n_clients`` sockets, the last ``n_stalled`` of which will stall.

    Commands on ``ctl``: ("phase", name) start recording; ("stall", name) the stalled clients
    stop reading, recording goes on under ``name``; ("drain",) they read again; ("report",)
    send the recorded arrays; ("quit",)."""
    clients: dict[int, Client] = {}
    try:
        for i in range(n_clients):
            # The stalled-to-be connect last; and everyone already connected is read between
            # handshakes, so nobody (least of all a 4 KiB receive buffer) looks slow meanwhile.
            stalled = i >= n_clients - n_stalled
            sock = connect(port, path, subscribe, stalled)
            clients[sock.fileno()] = Client(sock, stalled)
            for client in clients.values():
                with contextlib.suppress(BlockingIOError):
                    while data := client.sock.recv(_RECV):
                        parse(client, data, 0, 0, None, None)
    except Exception as exc:                       # report instead of hanging the driver
        ctl.send({"error": f"client {len(clients)} of {n_clients} on port {port}: {exc!r}"})
        return
    ctl.send({"connected": len(clients)})
    ep = select.epoll()
    for fd in clients:
        ep.register(fd, select.EPOLLIN)
    ctl_fd = ctl.fileno()
    ep.register(ctl_fd, select.EPOLLIN)
    phases: dict[str, tuple[array, array]] = {}
    lat: array | None = None                       # None: warm-up, nothing recorded
    arr: array | None = None
    stalled_reading = True
    healthy_closed: list[tuple[int | None, str]] = []
    running = True
    while running:
        for fd, _ in ep.poll(0.5, len(clients) + 1):
            if fd == ctl_fd:
                cmd = ctl.recv()
                if cmd[0] in ("phase", "stall"):
                    lat, arr = phases.setdefault(cmd[1], (array("q"), array("q")))
                    if cmd[0] == "stall":
                        stalled_reading = False
                        for c in clients.values():
                            if c.stalled:
                                ep.unregister(c.sock.fileno())
                elif cmd[0] == "drain":
                    stalled_reading = True
                    lat = arr = None
                    for c in clients.values():
                        if c.stalled:
                            ep.register(c.sock.fileno(), select.EPOLLIN)
                elif cmd[0] == "report":
                    stalled = [c for c in clients.values() if c.stalled]
                    ctl.send({"phases": {k: (v[0].tobytes(), v[1].tobytes())
                                         for k, v in phases.items()},
                              "healthy_closed": healthy_closed,
                              "stalled": [(c.close_code, c.close_reason, c.eof) for c in stalled]})
                elif cmd[0] == "quit":
                    running = False
                continue
            client = clients[fd]
            try:
                data, anc, _, _ = client.sock.recvmsg(_RECV, _ANC)
            except BlockingIOError:
                continue
            except OSError:
                data, anc = b"", []
            now = time.time_ns()
            if not data:
                client.eof = True
                ep.unregister(fd)
                if not client.stalled and client.close_code is None:
                    healthy_closed.append((None, "connection lost"))
                continue
            if client.stalled and not stalled_reading:
                continue
            if client.stalled:
                parse(client, data, now, 0, None, None)
            else:
                parse(client, data, now, _arrival(anc) if lat is not None else 0, lat, arr)
            if client.close_code is not None and not client.stalled:
                healthy_closed.append((client.close_code, client.close_reason))
                ep.unregister(fd)
    for c in clients.values():
        c.sock.close()
