"""Many WebSocket clients against a real ``alphapulse-server``: the load driver (issue 5, issue 7 §8).

Used by ``benchmarks/ws_fanout.py``, ``scripts/load-test clients`` and tests/stress.  On a
2-core machine a load generator made of 500 ``websockets`` client objects in one asyncio loop
saturates long before the server does, and then measures itself.  So the clients here are raw
non-blocking sockets, spread over ``workers`` processes, each one an ``epoll`` loop with no
asyncio and no per-message objects: read what the socket has, split it into frames, pull every
``"ts_recv":<ns>`` out of the text payloads with one regex, and record ``now - ts_recv``.  Both
ends read the same host clock, so that is the server's delivery latency from the moment it
received the exchange frame (parse + fan-out + socket + client wake-up).

One run (:func:`run`):

1. replay servers (this process) feed a server child process (``python -m alphapulse.server.cli``);
2. the workers connect every client (handshake, one subscribe to ``channels``), then warm up;
3. ``baseline``: every client reads; latencies of the clients that will later stall are not
   counted, so both phases measure the same healthy set;
4. ``with_stalled``: the chosen clients stop reading (their sockets have a 4 KiB receive buffer,
   so the server sees their window close quickly); the driver polls the server's
   ``slow_client`` disconnect counter to time each close; healthy clients keep measuring;
5. the stalled clients read again: each must find its backlog, then a 1008 close frame.

The result dict (JSON-able) holds per phase the healthy p50/p99/max in ms, message counts,
healthy clients closed (must be 0), server RSS and CPU; for the stalled clients their close
codes, reasons and the close times after the stall (from the server's counter).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

FIXTURES = Path(os.environ.get("ALPHAPULSE_FIXTURES", "/work/shared/fixtures")) / "generated"
CAPTURES = {"kraken": "kraken-clean", "coinbase": "coinbase-clean",
            "binanceus": "binanceus-clean"}
STALLED_RCVBUF = 4096
_TS = re.compile(rb'"ts_recv":(\d+)')


def default_channels(exchanges: list[str], symbol: str = "BTC-USD") -> list[str]:
    """The 6 channels with traffic in the bundled captures: book + trades of 3 exchanges."""
    return [f"{kind}:{ex}:{symbol}" for ex in exchanges for kind in ("book", "trades")]


# --- the client side (runs in the worker processes) ---------------------------------------------

def _client_frame(text: bytes) -> bytes:
    """A masked client text frame; the zero mask key leaves the payload as is (RFC 6455 allows
    any key; the server unmasks whatever it is)."""
    n = len(text)
    head = bytes((0x81, 0x80 | n)) if n < 126 else b"\x81\xfe" + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + text


def _connect(port: int, path: str, subscribe: bytes, stalled: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if stalled:
        # Set before connect: the window the server sees is this small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


class _Client:
    __slots__ = ("sock", "buf", "stalled", "close_code", "close_reason", "closed_at", "eof")

    def __init__(self, sock: socket.socket, stalled: bool) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.stalled = stalled
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at = 0.0
        self.eof = False


def _parse(client: _Client, data: bytes, now: int, lat: array | None) -> None:
    """Consume the complete frames in ``client.buf + data``; latencies (µs) go to ``lat``.

    Hot path of the whole load generator (once per message per client), so: no copy when
    nothing was left over, a header walk per frame, and one regex over all the frames' bytes
    (the server sends the market data as JSON text frames)."""
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
    if pos < end:
        client.buf += data[pos:]


def _worker(port: int, path: str, subscribe: bytes, n_clients: int, n_stalled: int,
            ctl: Connection) -> None:
    """One worker process: ``n_clients`` sockets, the first ``n_stalled`` of which will stall."""
    clients: dict[int, _Client] = {}
    try:
        for i in range(n_clients):
            # The stalled-to-be connect last; and everyone already connected is read between
            # handshakes, so nobody (least of all a 4 KiB receive buffer) looks slow meanwhile.
            stalled = i >= n_clients - n_stalled
            sock = _connect(port, path, subscribe, stalled)
            clients[sock.fileno()] = _Client(sock, stalled)
            for client in clients.values():
                with contextlib.suppress(BlockingIOError):
                    while data := client.sock.recv(1 << 18):
                        _parse(client, data, 0, None)
    except Exception as exc:                       # report instead of hanging the driver
        ctl.send({"error": f"client {len(clients)} of {n_clients} on port {port}: {exc!r}"})
        return
    ctl.send({"connected": len(clients)})
    ep = select.epoll()
    for fd in clients:
        ep.register(fd, select.EPOLLIN)
    ep.register(ctl.fileno(), select.EPOLLIN)
    phases: dict[str, array] = {}
    lat: array | None = None                       # None: warm-up, nothing recorded
    stalled_reading = True
    healthy_closed: list[tuple[int | None, str]] = []
    running = True
    while running:
        for fd, _ in ep.poll(0.5):
            if fd == ctl.fileno():
                cmd = ctl.recv()
                if cmd[0] == "phase":
                    lat = phases.setdefault(cmd[1], array("q"))
                elif cmd[0] == "stall":
                    stalled_reading = False
                    for c in clients.values():
                        if c.stalled:
                            ep.unregister(c.sock.fileno())
                    lat = phases.setdefault(cmd[1], array("q"))
                elif cmd[0] == "drain":
                    stalled_reading = True
                    lat = None
                    for c in clients.values():
                        if c.stalled:
                            ep.register(c.sock.fileno(), select.EPOLLIN)
                elif cmd[0] == "report":
                    stalled = [c for c in clients.values() if c.stalled]
                    ctl.send({"phases": {k: v.tobytes() for k, v in phases.items()},
                              "healthy_closed": healthy_closed,
                              "stalled": [(c.close_code, c.close_reason, c.eof) for c in stalled]})
                elif cmd[0] == "quit":
                    running = False
                continue
            client = clients[fd]
            try:
                data = client.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            now = time.time_ns()
            if not data:
                client.eof = True
                ep.unregister(fd)
                if not client.stalled and client.close_code is None:
                    healthy_closed.append((None, "connection lost"))
                continue
            if client.stalled and not stalled_reading:
                continue
            _parse(client, data, now, None if client.stalled else lat)
            if client.close_code is not None and not client.stalled:
                healthy_closed.append((client.close_code, client.close_reason))
                ep.unregister(fd)
    for c in clients.values():
        c.sock.close()


# --- the driver -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: Any, q: float) -> float:
    import numpy as np
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _slow_closed(port: int) -> float:
    """The server's ``alphapulse_websocket_disconnects_total{reason="slow_client"}``."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("alphapulse_websocket_disconnects_total")
               and 'reason="slow_client"' in line)


@contextlib.contextmanager
def _server(urls: dict[str, str], rest_url: str | None, shm: str, env: dict[str, str]) -> Any:
    """``alphapulse-server`` as a child process pointed at the replays: yields (port, psutil
    process) once it listens; terminated (then killed) on exit."""
    import psutil
    port = _free_port()
    args = [sys.executable, "-m", "alphapulse.server.cli", "--exchanges", ",".join(urls),
            "--symbols", "BTC-USD", "--port", str(port), "--shm-dir", shm,
            "--name", f"wsload{os.getpid()}", "--log-level", "warning"]
    args += ["--binanceus-rest-url", rest_url] if rest_url else []
    for exchange, url in urls.items():
        args += [f"--{exchange}-ws-url", url]
    log = tempfile.TemporaryFile()        # the server's stderr, for the error message
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=log)

    def died() -> RuntimeError:
        log.seek(0)
        tail = log.read()[-2000:].decode(errors="replace")
        return RuntimeError(f"server exited with {proc.returncode}:\n{tail}")

    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise died()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            if time.monotonic() > deadline:
                raise TimeoutError("server did not listen within 30 s")
            time.sleep(0.1)
        try:
            yield port, psutil.Process(proc.pid)
        except Exception:
            if proc.poll() is not None:
                raise died() from None
            raise
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run(*, clients: int = 500, stalled: int = 10, workers: int = 2, seconds: float = 20.0,
        warmup: float = 3.0, speed: float = 1.0, exchanges: list[str] | None = None,
        channels: list[str] | None = None, batch: bool = False, queue_size: int | None = None,
        slow_client_s: float | None = None, drain_timeout: float = 20.0,
        log: Any = None) -> dict[str, Any]:
    """One measured run (see the module docstring); blocking; returns the result dict.

    ``seconds`` is the length of each measured phase (baseline, with_stalled)."""
    import asyncio

    return asyncio.run(_run(clients=clients, stalled=stalled, workers=workers, seconds=seconds,
                            warmup=warmup, speed=speed, exchanges=exchanges or list(CAPTURES),
                            channels=channels, batch=batch, queue_size=queue_size,
                            slow_client_s=slow_client_s, drain_timeout=drain_timeout,
                            log=log or (lambda *a: None)))


async def _run(*, clients: int, stalled: int, workers: int, seconds: float, warmup: float,
               speed: float, exchanges: list[str], channels: list[str] | None, batch: bool,
               queue_size: int | None, slow_client_s: float | None, drain_timeout: float,
               log: Any) -> dict[str, Any]:
    import asyncio

    import numpy as np
    import orjson

    from alphapulse.replay import serve

    channels = channels or default_channels(exchanges)
    need = warmup + 2 * seconds + 10
    capture_s = 133.0 / speed
    if capture_s < need:
        log(f"warning: the captures last {capture_s:.0f} s at {speed:g}x, the run needs "
            f"{need:.0f} s: the stream ends early")
    env = {}
    if queue_size:
        env["ALPHAPULSE_WS_QUEUE_SIZE"] = str(queue_size)
    if slow_client_s:
        env["ALPHAPULSE_WS_SLOW_CLIENT_S"] = str(slow_client_s)
    subscribe = orjson.dumps({"op": "subscribe", "channels": channels})
    path = "/ws?batch=1" if batch else "/ws"
    ctx = multiprocessing.get_context("spawn")
    async with contextlib.AsyncExitStack() as stack:
        reps = {ex: await stack.enter_async_context(
            serve(ex, [FIXTURES / f"{CAPTURES[ex]}.jsonl"], speed=speed)) for ex in exchanges}
        shm = stack.enter_context(tempfile.TemporaryDirectory(dir="/dev/shm"))
        # Started from a thread: its wait for the port must not stall the replays' loop.
        port, ps = await asyncio.to_thread(stack.enter_context, _server(
            {e: r.ws_url for e, r in reps.items()},
            reps["binanceus"].rest_url if "binanceus" in reps else None, shm, env))
        # Spread clients and stalled clients evenly over the workers.
        pipes, procs = [], []
        for w in range(workers):
            n = clients // workers + (w < clients % workers)
            k = stalled // workers + (w < stalled % workers)
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(port, path, subscribe, n, k, theirs),
                               daemon=True)
            proc.start()
            pipes.append(ours)
            procs.append(proc)

        def kill_workers() -> None:
            for p in procs:
                p.kill()
        stack.callback(kill_workers)

        async def recv(pipe: Connection, timeout: float = 60.0) -> Any:
            ok = await asyncio.to_thread(pipe.poll, timeout)
            if not ok:
                raise TimeoutError("worker did not answer")
            msg = pipe.recv()
            if isinstance(msg, dict) and "error" in msg:
                raise RuntimeError(f"worker: {msg['error']}")
            return msg

        def send(cmd: tuple) -> None:
            for pipe in pipes:
                pipe.send(cmd)

        for pipe in pipes:
            await recv(pipe, 150.0)       # the connection storm: slow against a slow server
        log(f"{clients} clients connected over {workers} workers; warm-up {warmup:g} s")
        await asyncio.sleep(warmup)
        result: dict[str, Any] = {"clients": clients, "stalled": stalled, "workers": workers,
                                  "speed": speed, "channels": channels, "batch": batch,
                                  "phases": {}}
        import psutil
        worker_ps = [psutil.Process(p.pid) for p in procs]
        for phase in ("baseline", "with_stalled"):
            ps.cpu_percent(None)
            for w in worker_ps:
                w.cpu_percent(None)
            t0 = time.monotonic()
            closes: list[float] = []
            if phase == "baseline":
                send(("phase", phase))
                rss_max = 0
                t_end = time.monotonic() + seconds
                while time.monotonic() < t_end:
                    rss_max = max(rss_max, ps.memory_info().rss)
                    await asyncio.sleep(0.5)
            else:
                before = await asyncio.to_thread(_slow_closed, port)
                send(("stall", phase))
                t_stall = time.monotonic()
                rss_max = 0
                seen = before
                while time.monotonic() - t_stall < seconds:
                    now_closed = await asyncio.to_thread(_slow_closed, port)
                    t = time.monotonic() - t_stall
                    while seen < now_closed:
                        closes.append(round(t, 2))
                        seen += 1
                    rss_max = max(rss_max, ps.memory_info().rss)
                    await asyncio.sleep(0.1)
            elapsed = time.monotonic() - t0
            cpu = ps.cpu_percent(None)
            workers_cpu = sum(w.cpu_percent(None) for w in worker_ps)
            result["phases"][phase] = {"seconds": round(elapsed, 1), "server_cpu_pct": round(cpu),
                                       "workers_cpu_pct": round(workers_cpu),
                                       "server_rss_mib": round(ps.memory_info().rss / 2**20, 1),
                                       "server_rss_max_mib": round(rss_max / 2**20, 1)}
            if phase == "with_stalled":
                result["phases"][phase]["stalled_close_s"] = closes
        send(("drain",))
        await asyncio.sleep(min(drain_timeout, 2.0 + 0.5 * stalled / max(workers, 1)))
        deadline = time.monotonic() + drain_timeout
        send(("report",))
        reports = [await recv(pipe) for pipe in pipes]
        # A stalled client may still be reading its backlog: ask again until it has its close.
        while (any(code is None and not eof for r in reports for code, _, eof in r["stalled"])
               and time.monotonic() < deadline):
            await asyncio.sleep(1.0)
            send(("report",))
            reports = [await recv(pipe) for pipe in pipes]
        send(("quit",))
        for p in procs:
            await asyncio.to_thread(p.join, 10)
    for phase, row in result["phases"].items():
        lat = np.concatenate([np.frombuffer(r["phases"].get(phase, b""), dtype=np.int64)
                              for r in reports]) / 1000.0
        row.update({"messages": int(len(lat)), "msgs_per_s": round(len(lat) / row["seconds"]),
                    "p50_ms": round(_pct(lat, 50), 2), "p99_ms": round(_pct(lat, 99), 2),
                    "max_ms": round(float(lat.max()) if len(lat) else float("nan"), 1)})
    stalled_rows = [s for r in reports for s in r["stalled"]]
    result["stalled_close_codes"] = [code for code, _, _ in stalled_rows]
    result["stalled_closed_1008"] = sum(1 for code, _, _ in stalled_rows if code == 1008)
    result["stalled_reasons"] = sorted({reason for _, reason, _ in stalled_rows if reason})[:3]
    result["healthy_closed"] = [c for r in reports for c in r["healthy_closed"]]
    base, st = result["phases"]["baseline"], result["phases"]["with_stalled"]
    result["p99_ratio"] = round(st["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None
    return result


def markdown(result: dict[str, Any]) -> str:
    """The run as a markdown table (one row per phase) plus the stalled clients' outcome."""
    lines = ["| phase | clients | stalled | msgs/s received | p50 ms | p99 ms | max ms | "
             "server CPU % | client workers CPU % | server RSS MiB (max) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for phase, r in result["phases"].items():
        lines.append(f"| {phase} | {result['clients']} | "
                     f"{result['stalled'] if phase != 'baseline' else 0} | {r['msgs_per_s']:,} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['server_cpu_pct']} | "
                     f"{r['workers_cpu_pct']} | "
                     f"{r['server_rss_mib']} ({r['server_rss_max_mib']}) |")
    closes = result["phases"]["with_stalled"].get("stalled_close_s", [])
    lines.append("")
    lines.append(f"stalled clients closed 1008: {result['stalled_closed_1008']}/{result['stalled']}"
                 f"; close times after the stall (s): {closes}; healthy clients closed: "
                 f"{len(result['healthy_closed'])}; p99 with stalled / baseline: "
                 f"{result['p99_ratio']}")
    return "\n".join(lines)
