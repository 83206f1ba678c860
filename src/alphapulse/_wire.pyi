"""Stub for the compiled record encoding and hot-record decoding (``_wire.pyx``); the format
is ``alphapulse.wire``'s."""
from typing import Any

from alphapulse._book import Delta

NAME_CACHE_MAX: int

def name_cache_sizes() -> tuple[int, int]: ...
def decode_names(block: bytes, le: int, ls: int) -> tuple[str, str, str] | None: ...
def encode_record(
    kind: int, exchange: str, symbol: str, native: str, ts_event: int, ts_recv: int,
    ts_pub: int, payload: bytes,
) -> bytes: ...
def encode_book(
    kind: int, exchange: str, symbol: str, native: str, delta: Delta, ts_event: int,
    ts_recv: int, ts_pub: int,
) -> bytes: ...
def encode_trade(
    exchange: str, symbol: str, native: str, price: str, size: str, side: str, trade_id: str,
    ts_event: int, ts_recv: int, ts_pub: int,
) -> bytes: ...
def use_event_classes(update: type, snapshot: type, trade: type) -> None: ...
def decode_event(data: bytes) -> Any | None: ...
