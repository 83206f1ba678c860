"""Normalised value types shared by every layer.

Prices and sizes are exact decimal strings as the exchange wrote them (re-formatted only where an
exchange sends JSON numbers: then at the instrument's precision).  Timestamps are integer
nanoseconds since the epoch: ``ts_event`` is the exchange's own time, ``ts_recv`` is when our
process received the frame (``time.time_ns()``), which latency figures are measured from.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._book import Delta

TakerSide = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class Trade:
    """One print.  ``side`` is the taker's (aggressor's) side, whatever the exchange reports."""

    exchange: str
    symbol: str          # normalised, e.g. "BTC-USD"
    native_symbol: str   # as the exchange writes it, e.g. "BTC/USD", "BTCUSD"
    price: str
    size: str
    side: TakerSide
    trade_id: str        # exchange's id as text ("" where the feed has none, e.g. Kraken v1)
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A full book after a (re)sync.

    ``delta`` is a snapshot ``Delta`` (``delta.is_snapshot``; applying it replaces the book) that
    carries every level and the book's sequence; ``delta.encode()`` is what goes on the rings.
    """

    exchange: str
    symbol: str
    native_symbol: str
    delta: Delta
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """The level changes one exchange message made, after they were applied and verified.

    ``delta.sequence`` is the book's sequence after the update (always previous + 1), and
    ``delta.changes`` includes levels dropped by the depth limit.
    """

    exchange: str
    symbol: str
    native_symbol: str
    delta: Delta
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Data was missed or could not be trusted; the book is being resynced.

    ``reason`` is a short counter label ("sequence", "checksum", "trade_id", "reconnect", ...).
    ``missed`` is the number of messages/trades known to be lost, or -1 when unknown.
    """

    exchange: str
    symbol: str          # "" when the gap concerns the whole connection
    reason: str
    detail: str
    missed: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that was counted and skipped."""

    exchange: str
    reason: str
    detail: str
    ts_recv: int


Event = Trade | BookSnapshot | BookUpdate | Gap | Rejected


def fast_constructor(cls: type) -> Any:
    """A constructor for a frozen, slotted dataclass that stores the fields directly.

    The dataclass ``__init__`` of a frozen class goes through ``object.__setattr__`` per field,
    which costs about twice as much (1.5 µs for a Trade here); the slot descriptors' own
    ``__set__`` gives the identical object.  Falls back to the class itself if the layout is
    not what this expects (the round-trip tests compare with ``==`` either way)."""
    names = [f.name for f in fields(cls)]
    setters = {f"_set_{n}": cls.__dict__.get(n) for n in names}
    if not all(type(d).__name__ == "member_descriptor" for d in setters.values()):
        return cls
    env: dict[str, Any] = {k: d.__set__ for k, d in setters.items()}
    env["_new"], env["_cls"] = object.__new__, cls
    body = "".join(f"    _set_{n}(o, {n})\n" for n in names)
    exec(f"def make({', '.join(names)}):\n    o = _new(_cls)\n{body}    return o\n", env)
    return env["make"]


#: ``Trade(...)`` (positional arguments, in field order) for the hot paths.
new_trade = fast_constructor(Trade)
