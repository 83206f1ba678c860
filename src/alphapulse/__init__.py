"""AlphaPulse: exact L2 order books from Coinbase, Kraken and Binance.US, served to local
processes through shared-memory rings and to remote clients over WebSocket, HTTP and Redis.

``import alphapulse`` never loads the server's dependencies (starlette, uvicorn, prometheus
client, redis).
"""
from __future__ import annotations

from . import ring
from ._book import Delta, OrderBook, diff
from .arbitrage import ArbitrageDetector, Opportunity
from .consolidated import ConsolidatedBook, ConsolidatedBooks
from .errors import (
    AlphaPulseError,
    BookError,
    ProducerGone,
    ProtocolError,
    RingError,
    RingFormatError,
    RingOverrun,
    RingPermissionError,
    SequenceError,
)
from .events import BookSnapshot, BookUpdate, Gap, Rejected, Trade

__version__ = "0.1.0"

__all__ = [
    "AlphaPulseError",
    "ArbitrageDetector",
    "BookError",
    "BookSnapshot",
    "BookUpdate",
    "ConsolidatedBook",
    "ConsolidatedBooks",
    "Delta",
    "Gap",
    "Opportunity",
    "OrderBook",
    "ProducerGone",
    "ProtocolError",
    "Rejected",
    "RingError",
    "RingFormatError",
    "RingOverrun",
    "RingPermissionError",
    "SequenceError",
    "Trade",
    "__version__",
    "diff",
    "ring",
]
