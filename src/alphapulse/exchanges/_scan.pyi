"""Stub for the compiled Coinbase / Binance.US frame scanners (``exchanges/_scan.pyx``).

Each returns ``(BookUpdate, crossed)`` when it handled the frame completely (book updated,
event built by ``make``), or None having changed nothing: the caller then takes the general
orjson path on the same frame.
"""
from collections.abc import Callable
from typing import Any

from alphapulse._book import OrderBook

MakeEvent = Callable[[str, str, str, Any, int, int], Any]

def coinbase_l2_update(frame: bytes, expected: int, products: dict[bytes, tuple[OrderBook, str]],
                       states: dict[str, str], max_levels: int, make: MakeEvent,
                       ts_recv: int) -> tuple[Any, bool] | None:
    """A canonical one-product Advanced Trade ``l2_data`` update with ``sequence_num ==
    expected`` for a live book, applied; else None."""

def binance_depth_update(frame: bytes, symbols: dict[bytes, tuple[OrderBook, str]],
                         states: dict[str, str], last_u: dict[str, int], bridge: set[str],
                         max_levels: int, make: MakeEvent,
                         ts_recv: int) -> tuple[Any, bool] | None:
    """A canonical ``depthUpdate`` (bare or combined-stream) continuing ``last_u[symbol]`` for
    a live book not bridging a snapshot, applied (``last_u`` advanced); else None."""

def coinbase_l2_snapshot(frame: bytes, expected: int, max_levels: int
                         ) -> tuple[str, int, list[tuple[str, str]], list[tuple[str, str]]] | None:
    """A canonical one-product ``l2_data`` snapshot with ``sequence_num == expected``:
    ``(product_id, ts_event, bids, asks)``, levels as ``(price, size)`` text in frame order;
    else None.  Nothing is applied: the caller hands the levels to ``OrderBook.snapshot``."""
