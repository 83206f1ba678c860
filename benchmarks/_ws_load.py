"""Many WebSocket clients against a real ``alphapulse-server``: the load driver (issue 5, issue 7 §8).

Used by ``benchmarks/ws_fanout.py``, ``scripts/load-test clients`` and tests/stress.  On a
2-core machine a load generator made of 500 ``websockets`` client objects in one asyncio loop
saturates long before the server does, and then measures itself.  So the clients are raw
non-blocking sockets spread over ``workers`` processes (``benchmarks/_ws_clients.py``), and each
message gives two latencies against its ``ts_recv`` (the server's read of the exchange frame):
``arrive`` (the kernel's timestamp of the segment reaching the client socket: the server's
delivery) and ``read`` (when the driver got round to reading it: its own delay included).

One run (:func:`run`):

1. replay servers (this process) feed a server child process (``python -m alphapulse.server.cli``);
2. the workers connect every client (handshake, one subscribe to ``channels``), then warm up;
3. ``baseline``: every client reads; latencies of the clients that will later stall are not
   counted, so both phases measure the same healthy set;
4. ``with_stalled``: the chosen clients stop reading (their sockets have a 4 KiB receive buffer,
   so the server sees their window close quickly); the driver polls the server's
   ``slow_client`` disconnect counter to time each close; healthy clients keep measuring;
5. the stalled clients read again: each must find its backlog, then a 1008 close frame.

The result dict (JSON-able) holds per phase the healthy p50/p99/max in ms (read; ``arrive_``
prefixed: kernel arrival), message counts,
healthy clients closed (must be 0), server RSS and CPU; for the stalled clients their close
codes, reasons and the close times after the stall (from the server's counter).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _ws_clients import worker

FIXTURES = Path(os.environ.get("ALPHAPULSE_FIXTURES", "/work/shared/fixtures")) / "generated"
CAPTURES = {"kraken": "kraken-clean", "coinbase": "coinbase-clean",
            "binanceus": "binanceus-clean"}


def default_channels(exchanges: list[str], symbol: str = "BTC-USD") -> list[str]:
    """The 6 channels with traffic in the bundled captures: book + trades of 3 exchanges."""
    return [f"{kind}:{ex}:{symbol}" for ex in exchanges for kind in ("book", "trades")]


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
def _server(urls: dict[str, str], rest_url: str | None, shm: str, env: dict[str, str],
            wrapper: str | None = None, extra: list[str] | None = None) -> Any:
    """``alphapulse-server`` as a child process pointed at the replays: yields (port, psutil
    process) once it listens; terminated (then killed) on exit.

    ``wrapper``: a script run instead of ``-m alphapulse.server.cli`` with the same arguments
    (to try another event loop, or profile, without touching the server); ``extra``: more
    server flags."""
    import psutil
    port = _free_port()
    entry = [wrapper] if wrapper else ["-m", "alphapulse.server.cli"]
    args = [sys.executable, *entry, "--exchanges", ",".join(urls),
            "--symbols", "BTC-USD", "--port", str(port), "--shm-dir", shm,
            "--name", f"wsload{os.getpid()}", "--log-level", "warning"]
    args += ["--binanceus-rest-url", rest_url] if rest_url else []
    for exchange, url in urls.items():
        args += [f"--{exchange}-ws-url", url]
    args += extra or []
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
        server_wrapper: str | None = None, server_args: list[str] | None = None,
        log: Any = None) -> dict[str, Any]:
    """One measured run (see the module docstring); blocking; returns the result dict.

    ``seconds`` is the length of each measured phase (baseline, with_stalled)."""
    import asyncio

    return asyncio.run(_run(clients=clients, stalled=stalled, workers=workers, seconds=seconds,
                            warmup=warmup, speed=speed, exchanges=exchanges or list(CAPTURES),
                            channels=channels, batch=batch, queue_size=queue_size,
                            slow_client_s=slow_client_s, drain_timeout=drain_timeout,
                            server_wrapper=server_wrapper, server_args=server_args,
                            log=log or (lambda *a: None)))


async def _run(*, clients: int, stalled: int, workers: int, seconds: float, warmup: float,
               speed: float, exchanges: list[str], channels: list[str] | None, batch: bool,
               queue_size: int | None, slow_client_s: float | None, drain_timeout: float,
               server_wrapper: str | None, server_args: list[str] | None,
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
            reps["binanceus"].rest_url if "binanceus" in reps else None, shm, env,
            server_wrapper, server_args))
        # Spread clients and stalled clients evenly over the workers.
        pipes, procs = [], []
        for w in range(workers):
            n = clients // workers + (w < clients % workers)
            k = stalled // workers + (w < stalled % workers)
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(port, path, subscribe, n, k, theirs),
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
        got = [r["phases"].get(phase, (b"", b"")) for r in reports]
        lat = np.concatenate([np.frombuffer(g[0], dtype=np.int64) for g in got]) / 1000.0
        arr = np.concatenate([np.frombuffer(g[1], dtype=np.int64) for g in got]) / 1000.0
        row.update({"messages": int(len(lat)), "msgs_per_s": round(len(lat) / row["seconds"]),
                    "p50_ms": round(_pct(lat, 50), 2), "p99_ms": round(_pct(lat, 99), 2),
                    "max_ms": round(float(lat.max()) if len(lat) else float("nan"), 1),
                    "arrive_p50_ms": round(_pct(arr, 50), 2),
                    "arrive_p99_ms": round(_pct(arr, 99), 2),
                    "arrive_max_ms": round(float(arr.max()) if len(arr) else float("nan"), 1)})
    stalled_rows = [s for r in reports for s in r["stalled"]]
    result["stalled_close_codes"] = [code for code, _, _ in stalled_rows]
    result["stalled_closed_1008"] = sum(1 for code, _, _ in stalled_rows if code == 1008)
    result["stalled_reasons"] = sorted({reason for _, reason, _ in stalled_rows if reason})[:3]
    result["healthy_closed"] = [c for r in reports for c in r["healthy_closed"]]
    base, st = result["phases"]["baseline"], result["phases"]["with_stalled"]
    result["p99_ratio"] = round(st["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None
    result["arrive_p99_ratio"] = (round(st["arrive_p99_ms"] / base["arrive_p99_ms"], 2)
                                  if base["arrive_p99_ms"] else None)
    return result


def markdown(result: dict[str, Any]) -> str:
    """The run as a markdown table (one row per phase) plus the stalled clients' outcome."""
    lines = ["| phase | clients | stalled | msgs/s received | arrive p50 ms | arrive p99 ms | "
             "read p50 ms | read p99 ms | read max ms | "
             "server CPU % | client workers CPU % | server RSS MiB (max) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for phase, r in result["phases"].items():
        lines.append(f"| {phase} | {result['clients']} | "
                     f"{result['stalled'] if phase != 'baseline' else 0} | {r['msgs_per_s']:,} | "
                     f"{r['arrive_p50_ms']} | {r['arrive_p99_ms']} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['server_cpu_pct']} | "
                     f"{r['workers_cpu_pct']} | "
                     f"{r['server_rss_mib']} ({r['server_rss_max_mib']}) |")
    closes = result["phases"]["with_stalled"].get("stalled_close_s", [])
    lines.append("")
    lines.append(f"stalled clients closed 1008: {result['stalled_closed_1008']}/{result['stalled']}"
                 f"; close times after the stall (s): {closes}; healthy clients closed: "
                 f"{len(result['healthy_closed'])}; p99 with stalled / baseline: "
                 f"{result['p99_ratio']} (read), {result['arrive_p99_ratio']} (arrive)")
    return "\n".join(lines)
