"""``alphapulse-server``: flags -> Config -> run."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="alphapulse-server",
        description="Collect market data from Coinbase, Kraken and Binance.US and serve it.",
    )


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
