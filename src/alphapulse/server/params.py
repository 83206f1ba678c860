"""Query- and path-parameter parsing for the HTTP API.

Every failure raises :class:`ParamError`, which the app turns into a 4xx JSON body naming the
parameter (``{"error": "invalid_parameter", "parameter": "limit", "detail": ...}``), so bad
input can never surface as a 5xx.  The parsers are pure functions of text; they know nothing of
Starlette, which keeps them testable on their own (tests/unit/test_params.py).
"""
from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from .store import INTERVALS

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
DEFAULT_DEPTH = 10
MAX_DEPTH = 10_000
# Nanosecond timestamps are int64: the latest representable instant is 2262-04-11.
_MAX_SECONDS = Decimal((1 << 63) - 1) / 10**9
MAX_BPS = 100_000.0


class ParamError(ValueError):
    """A bad request parameter.  ``status`` is the HTTP status to answer (400 or 404)."""

    def __init__(self, parameter: str, detail: str, status: int = 400,
                 error: str = "invalid_parameter") -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail
        self.status = status
        self.error = error

    def to_json(self) -> dict[str, object]:
        return {"error": self.error, "parameter": self.parameter, "detail": self.detail,
                "status": self.status}


def _show(text: str) -> str:
    """The offending value for a message, cut short so a huge value cannot bloat the reply."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def check_names(params: Iterable[tuple[str, str]], allowed: Collection[str]) -> dict[str, str]:
    """The query as a dict; an unknown or repeated parameter is an error.

    Rejecting unknown names catches typos (``limt=5``) that would otherwise be silently ignored.
    """
    seen: dict[str, str] = {}
    for name, value in params:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ParamError(name or "(empty)", f"unknown parameter (accepted: {known})")
        if name in seen:
            raise ParamError(name, "given more than once")
        seen[name] = value
    return seen


def integer(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer in ``[low, high]``; decimal digits only (no sign tricks, no floats)."""
    text = query.get(name)
    if text is None:
        return default
    stripped = text.strip()
    if not stripped.isascii() or not stripped.lstrip("-").isdigit() or len(stripped) > 20:
        raise ParamError(name, f"must be an integer between {low} and {high}, got {_show(text)}")
    value = int(stripped)
    if not low <= value <= high:
        raise ParamError(name, f"must be between {low} and {high}, got {value}")
    return value


def limit(query: Mapping[str, str], default: int = DEFAULT_LIMIT) -> int:
    return integer(query, "limit", default, 1, MAX_LIMIT)


def depth(query: Mapping[str, str], default: int = DEFAULT_DEPTH) -> int:
    return integer(query, "depth", default, 1, MAX_DEPTH)


def number(query: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A finite decimal number in ``[low, high]``."""
    text = query.get(name)
    if text is None:
        return default
    try:
        value = float(text.strip()) if len(text) <= 40 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ParamError(name, f"must be a finite number, got {_show(text)}")
    if not low <= value <= high:
        raise ParamError(name, f"must be between {low:g} and {high:g}, got {value:g}")
    return value


def timestamp(query: Mapping[str, str], name: str) -> int | None:
    """A point in time as integer ns since the epoch, or ``None`` when absent.

    Accepted: seconds since the epoch (``1700000000`` or ``1700000000.123456789``, as the
    original API's ``start_time``/``end_time``) or ISO 8601 (``2023-11-14T22:13:20Z``; without
    an offset, UTC).
    """
    text = query.get(name)
    if text is None:
        return None
    stripped = text.strip()
    if not stripped or len(stripped) > 40:
        raise ParamError(name, f"must be epoch seconds or an ISO 8601 time, got {_show(text)}")
    if stripped[0].isdigit() and ("-" not in stripped[1:] and ":" not in stripped):
        try:
            seconds = Decimal(stripped)
        except InvalidOperation:
            seconds = Decimal("NaN")
        if not seconds.is_finite() or not 0 <= seconds <= _MAX_SECONDS:
            raise ParamError(name, f"must be epoch seconds between 0 and {_MAX_SECONDS:.0f} "
                                   f"or an ISO 8601 time, got {_show(text)}")
        return int(seconds * 10**9)
    try:
        when = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParamError(name, f"must be epoch seconds or an ISO 8601 time, got {_show(text)}"
                         ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    delta = when - epoch
    ns = (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    if not 0 <= ns < (1 << 63):
        raise ParamError(name, f"must be between 1970-01-01 and 2262-04-11, got {_show(text)}")
    return ns


def time_range(query: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``start``/``end`` (also the original's ``start_time``/``end_time``); start <= end."""
    if "start" in query and "start_time" in query:
        raise ParamError("start_time", "give either start or start_time, not both")
    if "end" in query and "end_time" in query:
        raise ParamError("end_time", "give either end or end_time, not both")
    start_name = "start_time" if "start_time" in query else "start"
    end_name = "end_time" if "end_time" in query else "end"
    start = timestamp(query, start_name)
    end = timestamp(query, end_name)
    if start is not None and end is not None and end < start:
        raise ParamError(end_name, "must not be before start")
    return start, end


def interval(query: Mapping[str, str], default: str = "1m") -> str:
    text = query.get("interval")
    if text is None:
        return default
    if text not in INTERVALS:
        raise ParamError("interval", f"must be one of {', '.join(INTERVALS)}, got {_show(text)}")
    return text


def normalise_symbol(text: str) -> str | None:
    """``btc-usd``, ``BTC/USD`` and ``BTC_USD`` -> ``BTC-USD``; ``None`` if not BASE-QUOTE."""
    cleaned = text.strip().upper().replace("/", "-").replace("_", "-")
    base, sep, quote = cleaned.partition("-")
    if (not sep or not base.isalnum() or not quote.isalnum() or not base.isascii()
            or not quote.isascii() or len(cleaned) > 32):
        return None
    return cleaned


def symbol(text: str, known: Collection[str], *, parameter: str = "symbol") -> str:
    """A symbol the service knows, normalised; 404 naming ``symbol`` otherwise."""
    normal = normalise_symbol(text)
    if normal is None:
        raise ParamError(parameter, f"{_show(text)} is not a symbol of the form BASE-QUOTE "
                                    "(e.g. BTC-USD)")
    if normal not in known:
        raise ParamError(parameter, f"unknown symbol {normal!r} (known: "
                                    f"{', '.join(sorted(known)) or 'none'})",
                         status=404, error="not_found")
    return normal


def exchange(text: str | None, known: Collection[str], *, default: str | None = None,
             allow_all: bool = False, parameter: str = "exchange", status: int = 400) -> str:
    """A configured exchange name (case-insensitive), ``"all"`` where allowed."""
    if text is None:
        if default is None:
            raise ParamError(parameter, "is required")
        return default
    name = text.strip().lower()
    if allow_all and name == "all":
        return name
    if name not in known:
        choices = sorted(known) + (["all"] if allow_all else [])
        raise ParamError(parameter, f"unknown exchange {_show(text)} (known: "
                                    f"{', '.join(choices) or 'none'})",
                         status=status, error="not_found" if status == 404 else
                         "invalid_parameter")
    return name
