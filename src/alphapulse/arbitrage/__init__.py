"""Cross-exchange arbitrage detection with fees, staleness, resync and crossed-book guards.

Pure library code, synchronous, no I/O (the asyncio adapter at the bottom only moves results
onto a queue).  Typical use::

    detector = ArbitrageDetector(fees={"kraken": 40, "coinbase": 120}, threshold_bps=5,
                                 max_age_s=5.0, notional=10_000)
    detector.callbacks.append(print)            # every opened/closed Opportunity
    for event in events:                        # BookSnapshot / BookUpdate / Gap (others ignored)
        for opp in detector.on_event(event):    # the same Opportunities, returned
            ...
    detector.expire()                           # call periodically: closes opportunities whose
                                                # book went silent (see run_expiry())
    detector.open_opportunities()               # what is open now
    detector.recent("BTC-USD", limit=50, min_bps=10)
    detector.books["BTC-USD"].bbo()             # the consolidated view it maintains

    async for opp in detector.stream():         # async iterator over opened/closed events
        ...

The rule.  For a symbol quoted on venues A and B, buying on A at A's best ask and selling on B at
B's best bid makes, per unit bought, ``bid_B * (1 - fee_B) - ask_A * (1 + fee_A)``.  In basis
points of the buy notional::

    gross_bps = (bid_B - ask_A) / ask_A * 10_000
    net_bps   = gross_bps - fee_A_bps - fee_B_bps * bid_B / ask_A

(the sell leg's fee is charged on the higher sell price, hence the ratio; it is the "gross minus
both taker fees" of the issue, computed exactly).  An opportunity is open while
``net_bps > threshold_bps`` and both books pass the guards: live (not resyncing since a ``Gap``),
not crossed in themselves, and fresh (last event received no more than ``max_age_s`` before the
detector's clock).  One opportunity per (symbol, buy venue, sell venue) while the condition
holds: it is reported once when it opens and once when it closes (``status`` "open" /
"closed", ``duration_s``, ``close_reason``); changes while open are tracked (``updates``,
``peak_net_bps``, ``last_net_bps``) but not re-emitted.

The hot path: only a book event that changes its venue's top of book (price or size) reaches the
opportunity check, and only pairs involving that venue are examined.

Fees are taker fees in basis points per exchange (``fees=`` overrides ``DEFAULT_TAKER_FEES_BPS``
entry by entry; an exchange with no entry uses ``default_fee_bps``).  The defaults are each
venue's entry-tier spot taker rate; volume tiers lower them a lot, so configure your own.
Sources (no primary page was reachable offline; these are secondary, checked 2026-11):

    coinbase   120 bps  Coinbase Advanced, $0-1K 30-day volume: taker 1.20% / maker 0.60%
                        (tier table quoted in public API-integration docs; help.coinbase.com
                        "Coinbase Advanced fees" describes the model, the table needs a login)
    kraken      40 bps  Kraken Pro spot, entry tier: taker 0.40% / maker 0.25% (a public summary
                        of kraken.com/features/fee-schedule)
    binanceus   60 bps  Binance.US Tier 0 taker 0.60%.  UNSURE: not confirmed by any source
                        found; ccxt still lists the 2019 0.10%.  Set it if you trade there.

Metrics hooks for the server (plain attributes; read them or wrap the callbacks): counters
``events``, ``top_changes``, ``evaluations``, ``opened``, ``closed``, ``suppressed_stale``,
``suppressed_resyncing``, ``suppressed_crossed``, ``callback_errors`` (all of them as a dict:
``stats``); every ``Opportunity`` carries ``latency_s`` (detector clock at detection minus the
triggering event's ``ts_recv``, seconds), ``net_bps``/``gross_bps`` and, once closed,
``duration_s`` - observe them from a callback to fill histograms.  Callbacks run synchronously
inside ``on_event``/``expire``; an exception in one is counted, never propagated.

Server wiring, in short: feed every event to ``detector.on_event`` (it owns the consolidated
books: ``detector.books.get(symbol)`` -> ``ConsolidatedBook`` with ``bbo()`` and ``depth(n)``);
``detector.recent(symbol, limit, min_bps)`` for ``GET /arbitrage/{symbol}``;
``Opportunity.to_dict()`` for JSON; ``asyncio.create_task(run_expiry(detector))`` so silent
books close their opportunities.
"""
from __future__ import annotations

from ._detector import DEFAULT_TAKER_FEES_BPS, ArbitrageDetector
from ._opportunity import Opportunity
from ._stream import OpportunityStream, run_expiry

__all__ = [
    "DEFAULT_TAKER_FEES_BPS",
    "ArbitrageDetector",
    "Opportunity",
    "OpportunityStream",
    "run_expiry",
]
