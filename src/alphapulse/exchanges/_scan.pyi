"""Stub for the compiled Coinbase / Binance.US frame scanners (``exchanges/_scan.pyx``).

Each returns ``(BookUpdate, crossed)`` when it handled the frame completely (book updated,
event built by ``make``), or None having changed nothing: the caller then takes the general
orjson path on the same frame.
"""
from typing import Any

from alphapulse._book import OrderBook

class EventMaker:
    """``EventMaker(BookUpdate)(exchange, symbol, native_symbol, delta, ts_event, ts_recv)``:
    the frozen slotted event with its slots written from C; other layouts are called."""

    @property
    def direct(self) -> bool:
        """True when the slots are written directly (the class has exactly these six)."""
    def __init__(self, cls: type) -> None: ...
    def __call__(self, exchange: str, symbol: str, native_symbol: str, delta: Any,
                 ts_event: int, ts_recv: int) -> Any: ...

MakeEvent = EventMaker

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

def coinbase_trades(frame: bytes, expected: int, max_trades: int
                    ) -> list[tuple[str, str, str, str, str, int, int | None]] | None:
    """A canonical one-event ``market_trades`` update with ``sequence_num == expected`` whose
    trades pass every check of ``CoinbaseParser._trade`` but the product's: ``(product_id,
    price, size, taker side, trade_id, ts_event, seq)`` per trade in frame order; else None."""

def binance_trade(frame: bytes, max_time_ms: int = ...
                  ) -> tuple[str, str, int, str, str, str, int] | None:
    """A canonical ``trade`` / ``aggTrade`` event (bare or combined, keys in any order)
    passing every check of ``BinanceUSParser._trade`` but the symbol's: ``(native, kind,
    trade id, price, size, taker side, ts_event)``; else None."""
