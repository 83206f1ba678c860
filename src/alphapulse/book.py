"""The order book's Python face: re-exports the compiled core plus small helpers.

``OrderBook``, ``Delta`` and ``diff`` live in ``alphapulse._book`` (Cython); this module adds
the pieces strategy and collector code want around them without touching the hot path:
side normalisation, precision from a tick size, and a human-readable ladder.
"""
from __future__ import annotations

from ._book import ASK, BID, Delta, OrderBook, diff, format_decimal, parse_decimal
from .errors import BookError

__all__ = [
    "ASK",
    "BID",
    "Delta",
    "OrderBook",
    "diff",
    "format_decimal",
    "ladder",
    "normalize_side",
    "parse_decimal",
    "precision_of",
]

_SIDES = {"bid": "bid", "buy": "bid", "ask": "ask", "sell": "ask", "offer": "ask"}


def normalize_side(side: str | bytes | int) -> str:
    """Map any accepted side spelling (``"buy"``, ``b"offer"``, ``1`` ...) to ``"bid"``/``"ask"``."""
    if isinstance(side, bytes):
        side = side.decode("ascii", "replace")
    if isinstance(side, int) and not isinstance(side, bool) and side in (BID, ASK):
        return "bid" if side == BID else "ask"
    if isinstance(side, str) and side in _SIDES:
        return _SIDES[side]
    raise BookError(f"side {side!r} is not one of 'bid', 'ask', 'buy', 'sell', 'offer', 0, 1",
                    "side")


def precision_of(increment: str) -> int:
    """Number of decimals a tick/lot increment needs: ``"0.01"`` -> 2, ``"1"`` -> 0,
    ``"0.00001000"`` -> 5, ``"1e-05"`` -> 5.  Text only, so no float rounding."""
    text = increment.strip().lower()
    mantissa, _, exp = text.partition("e")
    exponent = int(exp) if exp else 0
    whole, _, frac = mantissa.partition(".")
    frac = frac.rstrip("0")
    if not (whole + frac).strip("0"):
        raise BookError(f"increment {increment!r} is zero", "increment")
    decimals = len(frac) - exponent
    if not frac and exponent >= 0:
        return 0
    if decimals > 18:
        raise BookError(f"increment {increment!r} needs more than 18 decimals", "increment")
    return max(decimals, 0)


def ladder(book: OrderBook, n: int = 10) -> str:
    """The top ``n`` levels as a two-column text ladder (asks above, best prices in the
    middle), for logs and the REPL."""
    asks = list(reversed(book.asks(n)))
    bids = book.bids(n)
    width = max((len(p) for p, _ in asks + bids), default=5)
    lines = [f"{book.exchange}:{book.symbol} seq={book.sequence}"
             + ("  CROSSED" if book.crossed else "")]
    lines += [f"  ask {p:>{width}}  {s}" for p, s in asks]
    spread = book.spread()
    lines.append(f"  --- spread {spread if spread is not None else '-'} ---")
    lines += [f"  bid {p:>{width}}  {s}" for p, s in bids]
    return "\n".join(lines)
