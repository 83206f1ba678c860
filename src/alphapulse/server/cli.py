"""``alphapulse-server``: flags -> Config -> run.

With no arguments it connects to Coinbase, Kraken and Binance.US for BTC-USD and ETH-USD, keeps
everything in memory and serves HTTP + WebSocket on port 3001.  ``--demo`` does the same offline
against replay servers on the captures bundled in ``alphapulse/_data``.  A bad setting prints a
message naming it and exits with status 2; SIGINT/SIGTERM shut down cleanly (status 0).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from alphapulse import __version__
from ..errors import ConfigError
from .config import SETTINGS, SOURCES, LOG_LEVELS, Config, load_config

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alphapulse-server",
        description="Collect market data from Coinbase, Kraken and Binance.US and serve it "
                    "over shared memory, WebSocket, HTTP, Prometheus and Redis Streams.",
        epilog="Precedence: defaults < --config FILE.toml < environment (API_PORT, REDIS_URL, "
               "BUFFER_SIZE, BATCH_TIMEOUT_MS, ALPHAPULSE_*) < flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="read settings from a TOML file (also ALPHAPULSE_CONFIG)")
    # Every flag defaults to None so that "not given" never overrides the file or environment.
    special = {
        "--demo": dict(action="store_true", default=None),
        "--source": dict(choices=SOURCES),
        "--log-level": dict(choices=LOG_LEVELS, type=str.lower),
        "--processes": dict(type=int, choices=(1, 2)),
        "--port": dict(metavar="N"),
        "--record": dict(metavar="DIR"),
        "--shm-dir": dict(metavar="DIR"),
        "--redis-url": dict(metavar="URL"),
    }
    for setting in SETTINGS:
        if setting.flag is None:
            continue
        kwargs: dict = dict(dest=setting.field, default=None, help=setting.help or None)
        kwargs.update(special.get(setting.flag, {}))
        if setting.flag.endswith("-url") and "metavar" not in kwargs:
            kwargs["metavar"] = "URL"
        parser.add_argument(setting.flag, **kwargs)
    return parser


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse ``argv`` (flags only) and merge it with the file and environment."""
    args = build_parser().parse_args(argv)
    flags = {s.field: getattr(args, s.field) for s in SETTINGS if s.flag is not None}
    return load_config(flags, config_file=args.config)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ConfigError as exc:
        print(f"alphapulse-server: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # A SIGTERM during start-up (before the event loop owns the signal) is a clean exit too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # Imported here so `--help`, `--version` and config errors stay fast and dependency-free.
    from .runtime import run

    try:
        return run(config)
    except ConfigError as exc:
        print(f"alphapulse-server: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
