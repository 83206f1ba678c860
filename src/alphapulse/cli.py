"""``alphapulse``: the command-line tools (replay, verify, bench).

    alphapulse replay --exchange {coinbase,kraken,binanceus} [--host H] [--port N]
                      [--speed X | --max] [--fault SPEC] FILE...
    alphapulse verify --exchange {coinbase,kraken,binanceus} FILE... [--json]
    alphapulse bench [NAME...]

Exit status: 0 success; 1 ``verify`` found checksum failures or unrecovered gaps; 2 usage or
input errors (unreadable file, bad fault spec).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

EXCHANGES = ("coinbase", "kraken", "binanceus")


def _exchange_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exchange", "-e", required=True, choices=EXCHANGES,
                        help="which exchange's protocol the capture speaks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alphapulse",
        description="AlphaPulse tools: serve captures as a fake exchange, verify captures, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rp = sub.add_parser("replay", help="serve captures as a local fake exchange",
                        description="Serve JSON Lines captures over WebSocket (and the REST "
                                    "snapshot endpoint where the exchange has one), speaking the "
                                    "exchange's exact protocol.  Runs until interrupted; after "
                                    "the last message connections stay open and idle.")
    _exchange_arg(rp)
    rp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    rp.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    pace = rp.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None,
                      help="replay speed relative to the capture's timing (default 1.0)")
    pace.add_argument("--max", dest="max_rate", action="store_true",
                      help="send as fast as the client reads")
    rp.add_argument("--fault", default="",
                    help="fault switches, e.g. drop_connection_at=100,rest_errors=429:429")
    rp.add_argument("files", nargs="+", metavar="FILE", type=Path)
    rp.set_defaults(handler=cmd_replay)

    vp = sub.add_parser("verify", help="check a capture with the real parser and book",
                        description="Run a capture through the collector's parser and book and "
                                    "summarise it.  Exit 0 when internally consistent, 1 on "
                                    "checksum failures or unrecovered gaps.")
    _exchange_arg(vp)
    vp.add_argument("files", nargs="+", metavar="FILE", type=Path)
    vp.add_argument("--json", action="store_true", help="print exactly one JSON object")
    vp.set_defaults(handler=cmd_verify)

    bp = sub.add_parser("bench", help="run the benchmark scripts in benchmarks/",
                        description="Run benchmarks/<NAME>.py scripts (all when none named).")
    bp.add_argument("names", nargs="*", metavar="NAME")
    bp.add_argument("--dir", type=Path, default=None,
                    help="benchmarks directory (default: ./benchmarks or the source checkout's)")
    bp.set_defaults(handler=cmd_bench)
    return parser


def _check_files(files: list[Path]) -> str | None:
    for f in files:
        if not f.is_file() or not os.access(f, os.R_OK):
            return f"cannot read capture file {f}"
    return None


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import Faults, serve

    problem = _check_files(args.files)
    if problem:
        print(f"alphapulse replay: {problem}", file=sys.stderr)
        return 2
    try:
        faults = Faults.parse(args.fault) if args.fault else None
    except ValueError as exc:
        print(f"alphapulse replay: --fault: {exc}", file=sys.stderr)
        return 2
    if args.speed is not None and args.speed <= 0:
        print("alphapulse replay: --speed must be > 0", file=sys.stderr)
        return 2

    async def main() -> None:
        server = serve(args.exchange, args.files, host=args.host, port=args.port,
                       speed=args.speed, max_rate=args.max_rate, faults=faults)
        async with server:
            print(f"{args.exchange} replay of {len(server.frames)} frames: ws {server.ws_url}  "
                  f"rest {server.rest_url}", flush=True)
            await server.serve_forever()

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def _print_summary(exchange: str, result: object) -> None:
    from .verify import Verification

    assert isinstance(result, Verification)
    s = result.summary
    print(f"{exchange} ({result.protocol or 'unknown protocol'}): {s['messages']} messages, "
          f"{s['trades']} trades, {s['books']} books, {s['snapshots']} snapshots, "
          f"{s['updates']} updates")
    print(f"checksums: {s['checksum_ok']} ok, {s['checksum_failed']} failed; gaps {s['gaps']}, "
          f"resyncs {s['resyncs']}")
    rejected = ", ".join(f"{k} {v}" for k, v in s["rejected"].items()) or "none"
    print(f"rejected: {rejected}")
    for symbol, top in s["top"].items():
        print(f"  {symbol:<12} bid {top['bid']}  ask {top['ask']}")
    if result.unrecovered:
        print(f"unrecovered books: {', '.join(result.unrecovered)}")
    print(f"elapsed {s['elapsed_s']:.3f}s -> {'consistent' if result.consistent else 'INCONSISTENT'}")


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    problem = _check_files(args.files)
    if problem:
        print(f"alphapulse verify: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR if args.json else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        result = verify(args.exchange, args.files)
    except ImportError as exc:       # an exchange module that is not installed / not built
        print(f"alphapulse verify: {args.exchange} support is unavailable: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"alphapulse verify: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(result.summary) + "\n")
    else:
        _print_summary(args.exchange, result)
    return 0 if result.consistent else 1


def _bench_dir(explicit: Path | None) -> Path | None:
    candidates = [explicit] if explicit else [Path.cwd() / "benchmarks",
                                              Path(__file__).resolve().parents[2] / "benchmarks"]
    return next((c for c in candidates if c is not None and c.is_dir()), None)


def cmd_bench(args: argparse.Namespace) -> int:
    directory = _bench_dir(args.dir)
    if directory is None:
        print("alphapulse bench: no benchmarks/ directory found (run from a source checkout)",
              file=sys.stderr)
        return 2
    scripts = sorted(p for p in directory.glob("*.py")
                     if not p.name.startswith(("bench_", "_", "conftest")))
    if args.names:
        wanted = {n.removesuffix(".py") for n in args.names}
        missing = wanted - {p.stem for p in scripts}
        if missing:
            print(f"alphapulse bench: no such benchmark: {', '.join(sorted(missing))}; "
                  f"available: {', '.join(p.stem for p in scripts)}", file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.stem in wanted]
    status = 0
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        status = max(status, subprocess.call([sys.executable, str(script)]))
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
