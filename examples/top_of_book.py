"""Print top of book and trades from a running AlphaPulse server, over shared memory.

Start a server (offline demo, or the real thing), then attach by its name::

    alphapulse-server --demo
    python examples/top_of_book.py                                  # BTC-USD, every exchange
    python examples/top_of_book.py book:kraken:ETH-USD trades:kraken:ETH-USD --name default

No network hop: the server writes into a ring that only this process reads, and this process
keeps mirror order books (``feed.book(exchange, symbol)``) identical to the server's.  If it
falls behind, it is told (``Overrun``) and its books come back by themselves from fresh
snapshots; if the server dies, ``ProducerGone`` says so.
"""
from __future__ import annotations

import argparse
import sys

from alphapulse import feed as apfeed
from alphapulse.errors import ProducerGone
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Trade


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("channels", nargs="*", default=["book:*:BTC-USD", "trades:*:BTC-USD"],
                        help="book:<exchange>:<symbol>, trades:<exchange>:<symbol> ('*' = any)")
    parser.add_argument("--name", default="default", help="the server's feed name (--name)")
    parser.add_argument("--shm-dir", default=None, help="the server's --shm-dir")
    parser.add_argument("--count", type=int, default=0, help="stop after N lines (0: never)")
    args = parser.parse_args()

    tops: dict[tuple[str, str], tuple] = {}
    lines = 0
    try:
        with apfeed.attach(args.name, args.channels, directory=args.shm_dir, wait=5) as feed:
            print(f"attached to {args.name!r} (server pid {feed.server_pid}): "
                  f"{', '.join(feed.channels)}", flush=True)
            for event in feed:
                if isinstance(event, (BookSnapshot, BookUpdate)):
                    book = feed.book(event.exchange, event.symbol)
                    if book is None:
                        continue
                    top = (book.best_bid(), book.best_ask())
                    if tops.get((event.exchange, event.symbol)) == top:
                        continue        # a change below the top: nothing to print
                    tops[(event.exchange, event.symbol)] = top
                    (bp, bs), (ap, as_) = top[0] or ("-", "-"), top[1] or ("-", "-")
                    line = (f"{event.exchange:>9} {event.symbol:<8} bid {bs:>14} @ {bp:<12} "
                            f"ask {ap:>12} x {as_:<14} spread {book.spread()}")
                elif isinstance(event, Trade):
                    line = (f"{event.exchange:>9} {event.symbol:<8} TRADE {event.side:<4} "
                            f"{event.size} @ {event.price}")
                elif isinstance(event, Gap):
                    line = f"{event.exchange:>9} {event.symbol:<8} GAP {event.reason}: {event.detail}"
                elif isinstance(event, apfeed.Overrun):
                    line = f"OVERRUN: missed {event.missed} records; books resync by themselves"
                elif isinstance(event, apfeed.Resync):
                    line = f"RESYNC {event.exchange} {event.symbol}: {event.reason}"
                else:
                    continue
                print(line, flush=True)
                lines += 1
                if args.count and lines >= args.count:
                    break
            else:
                print(f"server closed the feed: {feed.closed_reason}")
    except apfeed.FeedError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ProducerGone as exc:
        print(exc, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
