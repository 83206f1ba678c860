"""``alphapulse``: the command-line tools (replay, verify, bench)."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alphapulse",
        description="AlphaPulse tools: serve captures as a fake exchange, verify captures, benchmark.",
    )
    parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
