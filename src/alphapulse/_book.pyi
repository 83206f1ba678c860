"""Stub for the compiled order book (``alphapulse._book``), re-exported by ``alphapulse``.

Prices and sizes enter as decimal text and live as int64 scaled by ``10**precision``; they
leave as strings with exactly ``precision`` decimals.  No float ever decides a level.
"""
from collections.abc import Iterable
from typing import Any, Literal, SupportsIndex, TypeAlias

import numpy as np
import numpy.typing as npt

BID: Literal[0]
ASK: Literal[1]

Text: TypeAlias = str | bytes | int | float
"""A decimal number: str or bytes text ("65061.91", b"0.001", "1e-05"); ints are exact;
floats go through their shortest repr and must then fit the precision exactly."""
SideLike: TypeAlias = str | bytes | int
"""'bid' | 'buy' | 0 for bids; 'ask' | 'sell' | 'offer' | 1 for asks."""
Change: TypeAlias = tuple[SideLike, Text, Text]
Level: TypeAlias = tuple[str, str]
I64: TypeAlias = npt.NDArray[np.int64]
F64: TypeAlias = npt.NDArray[np.float64]

def parse_decimal(text: Text, precision: int) -> int:
    """Decimal text -> int scaled by ``10**precision`` (BookError on bad input)."""

def format_decimal(value: int, precision: int) -> str:
    """Scaled int -> string with exactly ``precision`` decimals."""

class Delta:
    """Level changes taking a book from one sequence number to the next.

    ``changes`` lists bid changes first, then ask changes, each side in application order;
    size "0" deletes.  ``is_snapshot`` deltas replace the whole book.  ``encode``/``decode``
    (binary) and ``to_json``/``from_json`` are exact inverses.
    """

    @property
    def sequence(self) -> int: ...
    @property
    def is_snapshot(self) -> bool: ...
    @property
    def exchange(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def price_precision(self) -> int: ...
    @property
    def size_precision(self) -> int: ...
    def __init__(
        self,
        changes: Iterable[Change] = (),
        *,
        sequence: int = 0,
        is_snapshot: bool = False,
        exchange: str = "",
        symbol: str = "",
        price_precision: int = 8,
        size_precision: int = 8,
    ) -> None:
        """Build a delta from ``(side, price, size)`` triples, validated like book input."""
    @property
    def changes(self) -> list[tuple[str, str, str]]:
        """``[(side, price, size), ...]``: side "bid"/"ask", bids first."""
    @property
    def bids(self) -> list[Level]:
        """Bid changes ``[(price, size), ...]`` in application order."""
    @property
    def asks(self) -> list[Level]:
        """Ask changes ``[(price, size), ...]`` in application order."""
    def to_arrays(self) -> tuple[npt.NDArray[np.uint8], I64, I64]:
        """``(sides, prices, sizes)``: sides 0/1, prices and sizes scaled int64."""
    def encode(self) -> bytes:
        """Compact binary form (varint, zigzag price steps, trailing-zero folding)."""
    @staticmethod
    def decode(data: bytes | bytearray | memoryview) -> Delta:
        """Exact inverse of ``encode``; BookError(field="delta") on malformed input."""
    def to_json(self) -> dict[str, Any]:
        """``{"exchange", "symbol", "sequence", "snapshot", "price_precision",
        "size_precision", "bids": [[price, size], ...], "asks": [...]}``."""
    @staticmethod
    def from_json(obj: dict[str, Any]) -> Delta:
        """Exact inverse of ``to_json``; BookError naming the bad key."""
    def __len__(self) -> int:
        """Number of changes."""
    def __eq__(self, other: object) -> bool: ...

class OrderBook:
    """An exact L2 order book for one instrument.

    Every mutating call is all-or-nothing: on BookError the book is unchanged.  ``depth`` > 0
    keeps only the best ``depth`` levels per side.  ``sequence`` starts at 0 and grows by one
    on each successful ``snapshot``/``update``/``apply``; ``apply_delta`` sets it to the
    delta's.  A crossed book is kept but reported by ``crossed``.
    """

    sequence: int
    """Starts at 0; +1 per successful snapshot/update/apply; writable (e.g. to adopt an
    exchange's counter)."""

    def __init__(
        self,
        symbol: str = "",
        price_precision: int = 8,
        size_precision: int = 8,
        *,
        exchange: str = "",
        depth: int = 0,
    ) -> None:
        """Empty book; precisions 0..18 decimals; ``depth`` 0 = unlimited."""
    @property
    def exchange(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def price_precision(self) -> int: ...
    @property
    def size_precision(self) -> int: ...
    @property
    def depth(self) -> int: ...
    # writes
    def snapshot(self, bids: Iterable[tuple[Text, Text]], asks: Iterable[tuple[Text, Text]]) -> Delta:
        """Replace the book (levels in any order; size 0 skipped; last duplicate wins);
        returns the snapshot Delta of the new book."""
    def update(self, side: SideLike, price: Text, size: Text) -> Delta:
        """Set one level (size 0 deletes); returns the effective Delta (may be empty)."""
    def apply(self, changes: Iterable[Change]) -> Delta:
        """Apply a batch all-or-nothing as one sequence step, then truncate to ``depth``;
        returns the effective changes incl. levels dropped by truncation (size "0")."""
    def apply_scaled(
        self,
        sides: npt.ArrayLike,
        prices: npt.ArrayLike,
        sizes: npt.ArrayLike,
    ) -> Delta:
        """``apply`` from scaled int arrays (sides 0/1), no text parsing."""
    def apply_delta(self, delta: Delta) -> None:
        """Apply a Delta; non-snapshot deltas need ``delta.sequence == sequence + 1``
        (SequenceError otherwise).  Afterwards ``sequence == delta.sequence``."""
    def apply_delta_top(self, delta: Delta) -> tuple[int, int, int, int] | None:
        """``apply_delta(delta)``; then the new ``bbo()`` if the delta changed the top of book
        (a best price or size on either side), else None."""
    def snapshot_delta(self) -> Delta:
        """The whole book as a snapshot Delta at the current sequence."""
    # reads
    def best_bid(self) -> Level | None:
        """``(price, size)`` of the best bid, or None."""
    def best_ask(self) -> Level | None:
        """``(price, size)`` of the best ask, or None."""
    def bbo(self) -> tuple[int, int, int, int]:
        """``(bid_price, bid_size, ask_price, ask_size)`` scaled ints; 0 for an empty side."""
    def spread(self) -> str | None:
        """Best ask - best bid (negative when crossed), or None."""
    def mid(self) -> str | None:
        """Exact mid with one decimal more than the price precision, or None."""
    @property
    def crossed(self) -> bool:
        """Best bid >= best ask."""
    @property
    def bid_count(self) -> int: ...
    @property
    def ask_count(self) -> int: ...
    def bids(self, n: int = 0) -> list[Level]:
        """Best ``n`` bids (0 = all), best first."""
    def asks(self, n: int = 0) -> list[Level]:
        """Best ``n`` asks (0 = all), best first."""
    def get(self, side: SideLike, price: Text) -> str | None:
        """Size at a price, or None."""
    def top(self, n: SupportsIndex) -> tuple[I64, I64, I64, I64]:
        """``(bid_prices, bid_sizes, ask_prices, ask_sizes)`` scaled int64, best first."""
    def top_into(self, out: I64) -> tuple[int, int]:
        """Fill a (4, n) int64 array (rows bid px, bid sz, ask px, ask sz; zero-padded);
        returns the level counts written.  Allocation-free."""
    def top_float(self, n: SupportsIndex) -> tuple[F64, F64, F64, F64]:
        """``top`` in natural units as float64 (display/models only)."""
    def checksum(self, levels: int = 10) -> int:
        """Kraken CRC32 (v2 rule) over the top ``levels`` per side at the book's precisions."""
    def copy(self) -> OrderBook:
        """Independent copy (levels, precisions, depth, sequence)."""
    @property
    def nbytes(self) -> int:
        """Bytes of C memory held (level chunks and their index, scratch)."""
    def __len__(self) -> int:
        """Levels on both sides."""
    def __eq__(self, other: object) -> bool:
        """Same levels and precisions (sequence ignored)."""

def diff(before: OrderBook, after: OrderBook) -> Delta:
    """Minimal Delta turning ``before`` into ``after``; sequence = ``after.sequence``."""
