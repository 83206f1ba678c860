"""WebSocket fan-out under load: replays -> ``alphapulse-server`` -> N WebSocket clients.

The server runs as its own process; the clients are raw sockets spread over ``--workers``
processes (``benchmarks/_ws_load.py``), each subscribed to ``--channels`` (default: book and
trades of the three exchanges, 6 channels).  Delivery latency = client receive time -
``ts_recv`` (when the server received the exchange frame; same host clock), over every healthy
client: ``arrive`` from the kernel's receive timestamp (the server's delivery), ``read`` when
the driver read it (its own delay included).  Two phases in the same run: ``baseline``
(everyone reads) and ``with_stalled`` (``--stalled`` clients stop reading: each must be closed
with 1008 within 5 s).

    flock /tmp/ap-bench.lock .venv/bin/python benchmarks/ws_fanout.py \\
        --clients 500 --stalled 10 [--seconds 20] [--speed 1] [--workers 2] [--batch] \\
        [--server-args '--processes 2'] [--server-wrapper script.py] [--json out.json]

Prints a markdown table (one row per phase) and the stalled clients' outcome.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ws_load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--stalled", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="client processes")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    ap.add_argument("--exchanges", default="kraken,coinbase,binanceus")
    ap.add_argument("--channels", default=None, help="comma-separated (default: 6 channels)")
    ap.add_argument("--batch", action="store_true", help="clients ask for batch frames")
    ap.add_argument("--queue", type=int, default=None, help="server per-client queue")
    ap.add_argument("--slow-client-s", type=float, default=None)
    ap.add_argument("--server-wrapper", default=None,
                    help="a script run instead of `-m alphapulse.server.cli` (same arguments)")
    ap.add_argument("--server-args", default="", help="more server flags, e.g. '--processes 2'")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = _ws_load.run(
        clients=args.clients, stalled=args.stalled, workers=args.workers, seconds=args.seconds,
        warmup=args.warmup, speed=args.speed, exchanges=args.exchanges.split(","),
        channels=args.channels.split(",") if args.channels else None, batch=args.batch,
        queue_size=args.queue, slow_client_s=args.slow_client_s,
        server_wrapper=args.server_wrapper, server_args=args.server_args.split(),
        log=lambda m: print(m, file=sys.stderr))
    print(_ws_load.markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
