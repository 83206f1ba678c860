"""Kraken v2's numbers as exact text, and its timestamps (split out of ``kraken.py``).

Kraken v2 sends prices and sizes as JSON *numbers*, and its checksum is over their decimal
text at the pair's precision, so a float's repr is never trusted.  orjson turns the numbers into
floats; the level texts are therefore taken from the raw frame by a narrow regex
(``"price":<num>,"qty":<num>``) and mapped back to the decoded levels by count and key order;
the book parses the text itself (trailing zeros are fine, digits beyond the precision are an
error).  Frames whose numbers the regex cannot account for fall back to Decimal parsing of the
permissive form, then to float formatting only where provably exact (|x| * 10**p < 10**15,
where every double formats back to its unique decimal at p places).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import ProtocolError

__all__ = ["MAX_LEVELS", "level_texts", "rfc3339_ns", "trade_texts"]

MAX_LEVELS = 5000   # per message; Kraken's deepest subscription is 1000 a side

_LEVEL = re.compile(rb'"price":(-?\d+(?:\.\d+)?),"qty":(-?\d+(?:\.\d+)?)[,}]')
_LEVEL_LOOSE = re.compile(rb'"price"\s*:\s*([^,}\s]+)\s*,\s*"qty"\s*:\s*([^,}\s]+)')
FRAC_SCALE = (10**9, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 10**2, 10, 1)
SECOND_CACHE: dict[bytes, int] = {}      # b"YYYY-MM-DDTHH:MM:SS" -> ns, filled by rfc3339_ns
_EPOCH_CACHE: dict[str, int] = {}


def rfc3339_ns(text: str) -> int:
    """``2023-07-30T15:29:58.343415Z`` -> ns since epoch (cached per minute: hot path)."""
    if len(text) >= 20 and text[-1] == "Z" and text[16] == ":" and text[19] in ".Z":
        base = _EPOCH_CACHE.get(text[:16])
        if base is None:
            base = int(datetime.fromisoformat(text[:16] + ":00+00:00").timestamp()) * 10**9
            if len(_EPOCH_CACHE) > 4096:
                _EPOCH_CACHE.clear()
            _EPOCH_CACHE[text[:16]] = base
        frac = text[20:-1]
        if len(SECOND_CACHE) > 4096:
            SECOND_CACHE.clear()
        SECOND_CACHE[text[:19].encode()] = base + int(text[17:19]) * 10**9
        return base + int(text[17:19]) * 10**9 + (int(frac.ljust(9, "0")[:9]) if frac else 0)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


def exact(value: Any, precision: int) -> bytes:
    """A decoded JSON number as text at ``precision`` -- only when that is provably its value.

    Below 10**15 units of the last place a double is closer to its decimal than to any other
    decimal with ``precision`` places, so formatting recovers it; the round trip check refuses
    numbers with digits beyond the precision.
    """
    if type(value) is int:
        return str(value).encode()
    if type(value) is not float:
        raise ProtocolError("wrong_type", f"number expected, got {type(value).__name__}")
    if not abs(value) < 10.0 ** (15 - precision):
        raise ProtocolError("inexact_number", repr(value))
    text = f"{value:.{precision}f}"
    if float(text) != value:
        raise ProtocolError("inexact_number", f"{value!r} has digits beyond {precision} places")
    return text.encode()


def decimals(text: str) -> int:
    """Number of digits after the '.' in a decimal string."""
    _, dot, frac = text.partition(".")
    return len(frac) if dot else 0


def _num(text: bytes) -> bytes:
    if text[:1] == b'"':
        raise ValueError("quoted number")
    value = Decimal(text.decode())
    if not value.is_finite():
        raise ValueError("not finite")
    return format(value, "f").encode()


def _from_frame(frame: bytes, want: int) -> list | None:
    """``want`` (price, qty) texts from the raw frame, in document order, or None."""
    found = _LEVEL.findall(frame)
    if len(found) == want:
        return found
    loose = _LEVEL_LOOSE.findall(frame)
    if len(loose) == want:
        try:
            return [(_num(p), _num(q)) for p, q in loose]
        except (InvalidOperation, ValueError):
            pass
    return None


def level_texts(frame: bytes, entries: list[Any],
                precisions: Callable[[Any], tuple[int, int]]) -> list:
    """Exact (price, qty) texts of every book level in ``entries``, in document order.

    ``precisions(symbol)`` gives a pair's (price, size) precision for the last-resort float
    formatting of an unusual layout (other key order...).
    """
    want = 0
    for e in entries:
        want += len(e["bids"]) + len(e["asks"])
    if want > MAX_LEVELS:
        raise ProtocolError("too_many_levels", f"{want} levels in one message")
    found = _from_frame(frame, want)
    if found is not None:
        return found
    out = []
    for e in entries:
        pp, sp = precisions(e["symbol"])
        for key in e:
            if key in ("bids", "asks"):
                out += [(exact(lv["price"], pp), exact(lv["qty"], sp)) for lv in e[key]]
    return out


def trade_texts(frame: bytes, data: list) -> list:
    """Exact (price, qty) texts of every trade in ``data``, in document order."""
    if len(data) > MAX_LEVELS:
        raise ProtocolError("too_many_levels", f"{len(data)} trades in one message")
    found = _from_frame(frame, len(data))
    if found is not None:
        return found
    return [(exact(t["price"], 8), exact(t["qty"], 8)) for t in data]
