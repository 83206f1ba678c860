"""A deliberately plain L2 book: two dicts of ``Decimal``, the test oracle for ``OrderBook``.

It shares no code with the compiled book (parsing via ``decimal``, checksum via ``zlib``), so
agreement between the two means something.  Other tests may import it
(``from book_reference import ReferenceBook``; tests/ is on ``sys.path`` under pytest's
rootdir-relative imports, or import it as ``tests.book_reference``).
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

SIDES = {"bid": "bid", "buy": "bid", 0: "bid", "ask": "ask", "sell": "ask", "offer": "ask",
         1: "ask"}


class ReferenceError_(ValueError):
    """Bad input, with the field name like BookError."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class ReferenceBook:
    """Dict-of-Decimal L2 book with the same rules as ``alphapulse.OrderBook``."""

    def __init__(self, price_precision: int = 8, size_precision: int = 8,
                 depth: int = 0) -> None:
        self.price_precision = price_precision
        self.size_precision = size_precision
        self.depth = depth
        self.sides: dict[str, dict[Decimal, Decimal]] = {"bid": {}, "ask": {}}
        self.sequence = 0

    # --- validation ---------------------------------------------------------------

    def _number(self, text: object, precision: int, field: str) -> Decimal:
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if isinstance(text, float):
            text = repr(text)
        if isinstance(text, bool) or not isinstance(text, (str, int)):
            raise ReferenceError_(f"{field} {text!r} is not a number", field)
        if isinstance(text, str) and (not text.isascii() or text != text.strip()
                                      or "_" in text):
            raise ReferenceError_(f"{field} {text!r} is not a number", field)
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ReferenceError_(f"{field} {text!r} is not a number", field) from None
        if not value.is_finite():
            raise ReferenceError_(f"{field} {text!r} is not finite", field)
        if value < 0:
            raise ReferenceError_(f"{field} {text!r} is negative", field)
        scaled = value.scaleb(precision)
        if scaled != scaled.to_integral_value():
            raise ReferenceError_(f"{field} {text!r} is off precision", field)
        if scaled >= 2**63:
            raise ReferenceError_(f"{field} {text!r} is out of range", field)
        return value

    def _side(self, side: object) -> str:
        if isinstance(side, bytes):
            side = side.decode("ascii", "replace")
        if isinstance(side, bool) or side not in SIDES:
            raise ReferenceError_(f"side {side!r}", "side")
        return SIDES[side]  # type: ignore[index]

    def _price(self, text: object) -> Decimal:
        value = self._number(text, self.price_precision, "price")
        if value == 0:
            raise ReferenceError_("price must be positive", "price")
        return value

    def _truncate(self) -> None:
        if not self.depth:
            return
        for name, levels in self.sides.items():
            keep = sorted(levels, reverse=(name == "bid"))[: self.depth]
            self.sides[name] = {p: levels[p] for p in keep}

    # --- writes -------------------------------------------------------------------

    def snapshot(self, bids: Iterable[tuple[object, object]],
                 asks: Iterable[tuple[object, object]]) -> None:
        new: dict[str, dict[Decimal, Decimal]] = {"bid": {}, "ask": {}}
        for name, levels in (("bid", bids), ("ask", asks)):
            for price, size in levels:
                p = self._price(price)
                s = self._number(size, self.size_precision, "size")
                if s:
                    new[name][p] = s
        self.sides = new
        self._truncate()
        self.sequence += 1

    def apply(self, changes: Iterable[tuple[object, object, object]]) -> None:
        parsed = [(self._side(side), self._price(price),
                   self._number(size, self.size_precision, "size"))
                  for side, price, size in changes]
        for side, price, size in parsed:
            if size:
                self.sides[side][price] = size
            else:
                self.sides[side].pop(price, None)
        self._truncate()
        self.sequence += 1

    def update(self, side: object, price: object, size: object) -> None:
        self.apply([(side, price, size)])

    # --- reads --------------------------------------------------------------------

    def _fmt(self, value: Decimal, precision: int) -> str:
        return f"{value:.{precision}f}"

    def levels(self, side: str, n: int = 0) -> list[tuple[str, str]]:
        book = self.sides[side]
        prices = sorted(book, reverse=(side == "bid"))
        if n:
            prices = prices[:n]
        return [(self._fmt(p, self.price_precision), self._fmt(book[p], self.size_precision))
                for p in prices]

    def bids(self, n: int = 0) -> list[tuple[str, str]]:
        return self.levels("bid", n)

    def asks(self, n: int = 0) -> list[tuple[str, str]]:
        return self.levels("ask", n)

    def best_bid(self) -> tuple[str, str] | None:
        top = self.bids(1)
        return top[0] if top else None

    def best_ask(self) -> tuple[str, str] | None:
        top = self.asks(1)
        return top[0] if top else None

    @property
    def crossed(self) -> bool:
        bids, asks = self.sides["bid"], self.sides["ask"]
        return bool(bids and asks and max(bids) >= min(asks))

    def checksum(self, levels: int = 10) -> int:
        """Kraken's v2 CRC32, written straight from the documented rule."""
        def digits(value: Decimal, precision: int) -> str:
            return self._fmt(value, precision).replace(".", "").lstrip("0")

        text = ""
        for side in ("ask", "bid"):
            book = self.sides[side]
            for price in sorted(book, reverse=(side == "bid"))[:levels]:
                text += digits(price, self.price_precision)
                text += digits(book[price], self.size_precision)
        return zlib.crc32(text.encode("ascii"))
