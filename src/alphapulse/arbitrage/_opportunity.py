"""The value an :class:`~alphapulse.arbitrage.ArbitrageDetector` reports: one opportunity."""
from __future__ import annotations

from typing import Any, NamedTuple


class Opportunity(NamedTuple):
    """One cross-exchange opportunity, as reported when it opened or when it closed.

    Immutable (a NamedTuple: cheap to build on the detection path); the closed event is a new
    value with the closing fields filled in.

    Prices and sizes are exact decimal text (each venue's own precision).  Timestamps are int
    nanoseconds: ``detected_ns``/``closed_ns`` on the detector's clock, ``*_ts_event`` /
    ``*_ts_recv`` those of the two books' last events at detection.  The ``walk_*`` fields walk
    both books from the top until ``walk_notional`` (quote currency, on the buy side) is
    reached or the next pair of levels stops paying after fees.
    """

    id: int
    status: str                   # "open" (the opened event) | "closed"
    symbol: str
    buy_exchange: str
    buy_price: str                # buy venue's best ask
    buy_size: str                 # size at that ask
    sell_exchange: str
    sell_price: str               # sell venue's best bid
    sell_size: str
    size: str                     # min(buy_size, sell_size): tradable at the top prices
    gross_bps: float
    net_bps: float
    buy_fee_bps: float
    sell_fee_bps: float
    threshold_bps: float
    walk_notional: float          # target
    walk_size: str                # base quantity the walk fills
    walk_cost: str                # quote spent buying it (exact)
    walk_proceeds: str            # quote received selling it (exact)
    walk_gross_bps: float         # size-weighted
    walk_net_bps: float
    detected_ns: int
    trigger_ts_recv: int          # ts_recv of the book event that opened it
    latency_s: float              # detected_ns - trigger_ts_recv, seconds
    buy_ts_event: int
    buy_ts_recv: int
    sell_ts_event: int
    sell_ts_recv: int
    closed_ns: int | None = None
    duration_s: float | None = None
    close_reason: str | None = None   # "edge" | "stale" | "resyncing" | "crossed" | "empty"
    updates: int = 0              # top-of-book changes seen while open
    peak_net_bps: float = 0.0
    last_net_bps: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the form the HTTP and WebSocket endpoints send)."""
        return self._asdict()
