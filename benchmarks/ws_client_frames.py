"""Collector WebSocket receive path: CPU per frame, stock ``websockets`` vs exchanges/_fastws.py.

A server process writes N pre-built ~190-byte text frames in large batches; the client takes
them three ways, in turn: ``recv(decode=False)`` on the stock ClientConnection (the anchor),
the same on FastClientConnection (its compiled frame slicer), and ``recv_batch(handler)`` --
direct dispatch, what the collectors run, whose front door hands each frame from the socket
read to the handler.  Prints CPU µs and wall µs per frame (uvloop, as the server runs).

    flock /tmp/ap-bench.lock .venv/bin/python benchmarks/ws_client_frames.py [--frames 200000]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time

import uvloop

PAYLOAD = (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":'
           b'96511.3,"qty":0.07083030}],"asks":[],"checksum":491954131,'
           b'"timestamp":"2026-11-27T10:00:00.016592Z"}]}')


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    return bytes((0x81, n)) + payload if n < 126 else b"\x81\x7e" + n.to_bytes(2, "big") + payload


def _server(port_q: mp.Queue, frames: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        batch = _frame(PAYLOAD) * 500
        for _ in range(frames // 500):
            ws.transport.write(batch)
            if ws.transport.get_write_buffer_size() > 4 << 20:
                await asyncio.sleep(0.001)
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port_q.put(next(iter(server.sockets)).getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


MODES = ("stock websockets", "fast recv()", "fast direct dispatch")


async def _client(port: int, frames: int, mode: str) -> tuple[float, float]:
    from websockets.asyncio.client import connect

    from alphapulse.exchanges._fastws import FastClientConnection
    extra = {"create_connection": FastClientConnection} if mode != MODES[0] else {}
    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_queue=None,
                       max_size=1 << 24, **extra) as ws:  # type: ignore[arg-type]
        t, c = time.perf_counter(), time.process_time()
        if mode == MODES[2]:
            got = 0

            def handler(message: bytes, ts: int) -> bool:
                nonlocal got
                got += 1
                return got < frames

            while got < frames:
                batch = await ws.recv_batch(handler)   # the handler moves `got` meanwhile
                got += len(batch)
            message = PAYLOAD
        else:
            recv = ws.recv
            for _ in range(frames):
                message = await recv(decode=False)
        assert message == PAYLOAD
        return (time.process_time() - c) / frames * 1e6, (time.perf_counter() - t) / frames * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    q: mp.Queue = mp.Queue()
    proc = mp.Process(target=_server, args=(q, args.frames), daemon=True)
    proc.start()
    port = q.get()
    print("| client | CPU µs/frame | wall µs/frame |\n|---|---:|---:|")
    try:
        for _ in range(args.repeat):
            for mode in MODES:
                cpu, wall = uvloop.run(_client(port, args.frames, mode))
                print(f"| {mode} | {cpu:.2f} | {wall:.2f} |")
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
