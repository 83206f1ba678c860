"""What one small TCP send costs on loopback: the floor under the WebSocket fan-out.

The fan-out writes each message once to every subscribed client.  This measures the same
pattern with nothing of ours in it: one process holds ``--clients`` connected loopback TCP
sockets (TCP_NODELAY, like the server's) and, ``--rounds-per-s`` times a second, sends one
``--size``-byte message to every socket (a "round", what one event costs the fan-out);
``--readers`` other processes read them all with epoll (like ``benchmarks/_ws_clients.py``).
Reported per configuration: wall time per ``send()`` (median over rounds), the sender's CPU per
send, and the time one round takes to reach every socket (p50/p99) — with one sending thread and
with ``--threads`` threads (``socket.send`` releases the GIL, so two threads can be in the
kernel at once).  On loopback a send also runs the receiver's TCP input and wakes its reader, in
the sender's context: that is why it costs far more than copying the bytes.

    python benchmarks/loopback_send.py --clients 500 --rounds 200
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import select
import socket
import statistics
import threading
import time
from multiprocessing.connection import Connection


def reader(listener: socket.socket, count: int, ready: Connection) -> None:
    """Accept ``count`` connections and read everything until they close."""
    conns = [listener.accept()[0] for _ in range(count)]
    poller = select.epoll()
    for c in conns:
        c.setblocking(False)
        poller.register(c.fileno(), select.EPOLLIN)
    by_fd = {c.fileno(): c for c in conns}
    ready.send(True)
    buf = bytearray(1 << 16)
    while by_fd:
        for fd, _ in poller.poll():
            try:
                n = by_fd[fd].recv_into(buf)
            except BlockingIOError:
                continue
            if n == 0:
                poller.unregister(fd)
                by_fd.pop(fd).close()


def connect_all(clients: int, readers: int) -> tuple[list[socket.socket], list[mp.Process]]:
    ctx = mp.get_context("fork")
    socks: list[socket.socket] = []
    procs = []
    share = [clients // readers + (i < clients % readers) for i in range(readers)]
    for count in share:
        listener = socket.create_server(("127.0.0.1", 0), backlog=count)
        here, there = ctx.Pipe()
        proc = ctx.Process(target=reader, args=(listener, count, there), daemon=True)
        proc.start()
        for _ in range(count):
            s = socket.create_connection(listener.getsockname())
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
        here.recv()
        listener.close()
        procs.append(proc)
    return socks, procs


def send_round(socks: list[socket.socket], payload: bytes) -> None:
    for s in socks:
        s.send(payload)


def run(socks: list[socket.socket], threads: int, rounds: int, rate: float,
        payload: bytes) -> dict[str, float]:
    parts = [socks[i::threads] for i in range(threads)]
    round_ms: list[float] = []
    cpu0 = time.process_time()
    period = 1.0 / rate
    next_t = time.perf_counter()
    for _ in range(rounds):
        next_t += period
        t0 = time.perf_counter_ns()
        if threads == 1:
            send_round(socks, payload)
        else:
            workers = [threading.Thread(target=send_round, args=(p, payload)) for p in parts[1:]]
            for w in workers:
                w.start()
            send_round(parts[0], payload)
            for w in workers:
                w.join()
        round_ms.append((time.perf_counter_ns() - t0) / 1e6)
        delay = next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    cpu = time.process_time() - cpu0
    round_ms.sort()
    p50 = statistics.median(round_ms)
    return {"send_us": p50 * 1000 / len(socks) * threads, "cpu_us": cpu / rounds / len(socks) * 1e6,
            "round_p50_ms": p50, "round_p99_ms": round_ms[int(0.99 * (len(round_ms) - 1))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--readers", type=int, default=2, help="reading processes")
    p.add_argument("--threads", type=int, default=2, help="sending threads to compare with 1")
    p.add_argument("--size", type=int, default=200, help="bytes per message")
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--rounds-per-s", type=float, default=66.0,
                   help="events per second (ws_fanout delivers ~66 a second per client)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    socks, procs = connect_all(args.clients, args.readers)
    payload = os.urandom(args.size)
    results: dict[int, list[dict[str, float]]] = {1: [], args.threads: []}
    for _ in range(args.repeat):            # interleaved, so both see the same machine
        for threads in results:
            results[threads].append(run(socks, threads, args.rounds, args.rounds_per_s, payload))
    for s in socks:
        s.close()
    for proc in procs:
        proc.join(timeout=5)
    print(f"{args.clients} loopback sockets, {args.size} B per send, {args.rounds_per_s:g} rounds/s, "
          f"{args.readers} reader processes; median of {args.repeat} runs of {args.rounds} rounds\n")
    print("| sending threads | wall µs per send | sender CPU µs per send | round p50 ms | round p99 ms |")
    print("|---:|---:|---:|---:|---:|")
    for threads, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {threads} | {med['send_us']:.1f} | {med['cpu_us']:.1f} | "
              f"{med['round_p50_ms']:.2f} | {med['round_p99_ms']:.2f} |")


if __name__ == "__main__":
    main()
