"""Every Prometheus metric family the server exports, declared once.

``Metrics()`` builds all families on its *own* ``CollectorRegistry`` (never the process-global
one), so tests and benchmarks can build as many independent instances as they like, and
``/metrics`` exposes exactly what this class declares plus the process collector.

Naming follows the Prometheus conventions: an ``alphapulse_`` prefix, base units in the name
(``_seconds``, ``_bytes``), ``_total`` on counters, histograms in seconds.  Labels are bounded:
exchanges and symbols come from the configuration, reasons from the collectors' fixed counter
labels, HTTP routes are route *templates* (``/trades/{symbol}``), never raw paths.

Hot-path callers (the hub calls :meth:`Metrics.on_event` for every event) go through small
per-label child caches, because ``Counter.labels(...)`` costs a lock and a tuple build each call.

``grafana/alphapulse-dashboard.json`` queries exactly these names; ``tests/unit/test_metrics.py``
checks that the dashboard uses no other ``alphapulse_`` name.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

from ..events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from ._dispatch import LatencyTally
from .gcpause import GcCollector

# Frame receipt -> publication is a few microseconds on the fast path and can reach
# milliseconds under load; buckets from 5 µs to 1 s cover both without losing the p99.
LATENCY_BUCKETS = (
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
    1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0,
)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REDIS_BUCKETS = (50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1.0)
ARB_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ARB_EDGE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)

#: Every metric family name this module declares (without the ``_total``/``_bucket`` suffixes
#: Prometheus adds on exposition).  The Grafana dashboard must use only these.
FAMILY_NAMES = (
    "alphapulse_build_info",
    "alphapulse_trades_processed_total",
    "alphapulse_book_updates_total",
    "alphapulse_book_snapshots_total",
    "alphapulse_processing_latency_seconds",
    "alphapulse_websocket_messages_total",
    "alphapulse_websocket_clients",
    "alphapulse_websocket_disconnects_total",
    "alphapulse_exchange_connected",
    "alphapulse_exchange_reconnects_total",
    "alphapulse_exchange_last_message_timestamp_seconds",
    "alphapulse_gaps_total",
    "alphapulse_resyncs_total",
    "alphapulse_rejected_messages_total",
    "alphapulse_ring_overruns_total",
    "alphapulse_ring_readers",
    "alphapulse_redis_operations_total",
    "alphapulse_redis_operation_latency_seconds",
    "alphapulse_redis_connected",
    "alphapulse_redis_buffered_entries",
    "alphapulse_redis_dropped_entries_total",
    "alphapulse_http_requests_total",
    "alphapulse_http_request_duration_seconds",
    "alphapulse_arbitrage_opportunities_total",
    "alphapulse_arbitrage_duration_seconds",
    "alphapulse_arbitrage_edge_bps",
    "alphapulse_arbitrage_detection_latency_seconds",
    "alphapulse_store_trades",
    "alphapulse_store_bars",
    "alphapulse_gc_collections_total",
    "alphapulse_gc_pause_seconds_total",
    "alphapulse_gc_frozen_objects",
)
PROCESS_FAMILY_NAMES = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
)


class _StoreCollector(Collector):
    """Reads the trade store's sizes at scrape time (nothing to update on the hot path)."""

    def __init__(self, sizes: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        self._sizes = sizes

    def collect(self) -> Iterable[GaugeMetricFamily]:
        trades = GaugeMetricFamily("alphapulse_store_trades",
                                   "Trades currently held in the in-memory store.",
                                   labels=["exchange", "symbol"])
        bars = GaugeMetricFamily("alphapulse_store_bars",
                                 "OHLCV bars currently held (all intervals).",
                                 labels=["exchange", "symbol"])
        for exchange, symbol, n_trades, n_bars in self._sizes():
            trades.add_metric([exchange, symbol], n_trades)
            bars.add_metric([exchange, symbol], n_bars)
        yield trades
        yield bars

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Describing without collecting keeps registration free of side effects.
        yield GaugeMetricFamily("alphapulse_store_trades", "", labels=["exchange", "symbol"])
        yield GaugeMetricFamily("alphapulse_store_bars", "", labels=["exchange", "symbol"])


class _LatencyHistogram(Collector):
    """A histogram by ``exchange`` observed in integer nanoseconds without locks or floats.

    ``prometheus_client.Histogram.observe`` costs several microseconds (a lock, a float
    conversion, a scan of the buckets); here an observation is one bisect and two list updates
    on a plain list of bucket counts (``new_series``), and the metrics make one per event.
    Series live in *groups* (dicts keyed by tuples whose first item is the exchange) so that
    the owner can keep finer series -- per exchange and symbol, whose totals are its counters
    -- and the histogram sums them by exchange at scrape time.  Exposed exactly like a
    ``Histogram`` (``_bucket`` with ``le``, ``_count``, ``_sum`` in seconds).  Single-threaded:
    observed and scraped on the event loop.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(float(b) for b in buckets)
        # An observation of v ns goes to the first bucket with v <= bound (Prometheus' le).
        self.bounds_ns = tuple(round(b * 1e9) for b in self.bounds)
        self._groups: list[dict[tuple[str, ...], list[int]]] = []
        self._by_exchange = self.group()

    def group(self) -> dict[tuple[str, ...], list[int]]:
        """A new dict of series (``key -> new_series()``, ``key[0]`` the exchange) that the
        histogram exports, summed by exchange."""
        group: dict[tuple[str, ...], list[int]] = {}
        self._groups.append(group)
        return group

    def new_series(self) -> list[int]:
        """Bucket counts (one per bound, then +Inf) and the sum of the values in ns."""
        return [0] * (len(self.bounds_ns) + 2)

    def observe_ns(self, exchange: str, value_ns: int) -> None:
        key = (exchange,)
        series = self._by_exchange.get(key)
        if series is None:
            series = self._by_exchange[key] = self.new_series()
        if value_ns < 0:
            value_ns = 0
        series[bisect_left(self.bounds_ns, value_ns)] += 1
        series[-1] += value_ns

    def collect(self) -> Iterable[HistogramMetricFamily]:
        totals: dict[str, list[int]] = {}
        for group in self._groups:
            for key, series in group.items():
                total = totals.get(key[0])
                if total is None:
                    totals[key[0]] = list(series)
                else:
                    totals[key[0]] = [a + b for a, b in zip(total, series)]
        family = HistogramMetricFamily(self.name, self.documentation, labels=["exchange"])
        for exchange, series in sorted(totals.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*self.bounds, float("inf")), series[:-1]):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([exchange], buckets, series[-1] / 1e9)
        yield family

    def describe(self) -> Iterable[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=["exchange"])


class Metrics:
    """All of the server's metric families on one private registry.

    Attributes are the ``prometheus_client`` metric objects, named after the family without the
    ``alphapulse_`` prefix and ``_total`` suffix, so any module can do e.g.
    ``metrics.redis_operations.labels(op="xadd", result="ok").inc()``.
    """

    def __init__(self, *, process: bool = True, version: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build = Info("alphapulse_build", "AlphaPulse version.", registry=r)
        if version is None:
            from alphapulse import __version__ as version
        self.build.info({"version": version})

        # --- ingest -----------------------------------------------------------------------
        self.trades_processed = Counter(
            "alphapulse_trades_processed", "Trades received from exchanges and published.",
            ["exchange", "symbol"], registry=r)
        self.book_updates = Counter(
            "alphapulse_book_updates", "Order-book deltas applied and published.",
            ["exchange", "symbol"], registry=r)
        self.book_snapshots = Counter(
            "alphapulse_book_snapshots", "Full order-book snapshots (initial syncs and resyncs).",
            ["exchange", "symbol"], registry=r)
        # Observed on the hot path into plain per-exchange bucket counts (see on_event),
        # exposed as a histogram family at scrape time.
        self.processing_latency = _LatencyHistogram(
            "alphapulse_processing_latency_seconds",
            "Time from frame receipt (ts_recv) to publication to subscribers.", LATENCY_BUCKETS)
        r.register(self.processing_latency)

        # --- exchange connections ---------------------------------------------------------
        self.exchange_connected = Gauge(
            "alphapulse_exchange_connected", "1 while the exchange WebSocket is connected.",
            ["exchange"], registry=r)
        self.exchange_reconnects = Counter(
            "alphapulse_exchange_reconnects", "Exchange WebSocket reconnections.",
            ["exchange"], registry=r)
        self.exchange_last_message = Gauge(
            "alphapulse_exchange_last_message_timestamp_seconds",
            "Unix time of the last message received from the exchange.",
            ["exchange"], registry=r)
        self.gaps = Counter(
            "alphapulse_gaps", "Detected data gaps (sequence, checksum, reconnect...).",
            ["exchange", "reason"], registry=r)
        self.resyncs = Counter(
            "alphapulse_resyncs", "Book resynchronisations (snapshots after the first).",
            ["exchange"], registry=r)
        self.rejected_messages = Counter(
            "alphapulse_rejected_messages", "Exchange messages counted and skipped.",
            ["exchange", "reason"], registry=r)

        # --- fan-out ----------------------------------------------------------------------
        self.websocket_messages = Counter(
            "alphapulse_websocket_messages", "WebSocket messages to/from API clients.",
            ["direction"], registry=r)
        self.websocket_clients = Gauge(
            "alphapulse_websocket_clients", "Connected WebSocket API clients.", registry=r)
        self.websocket_disconnects = Counter(
            "alphapulse_websocket_disconnects", "WebSocket client disconnections by reason.",
            ["reason"], registry=r)
        self.ring_overruns = Counter(
            "alphapulse_ring_overruns",
            "Records dropped because a shared-memory reader (strategy) fell behind.", registry=r)
        self.ring_readers = Gauge(
            "alphapulse_ring_readers", "Attached shared-memory feed readers.", registry=r)

        # --- redis ------------------------------------------------------------------------
        self.redis_operations = Counter(
            "alphapulse_redis_operations", "Redis commands by operation and result.",
            ["op", "result"], registry=r)
        self.redis_latency = Histogram(
            "alphapulse_redis_operation_latency_seconds", "Redis command round-trip time.",
            ["op"], buckets=REDIS_BUCKETS, registry=r)
        self.redis_connected = Gauge(
            "alphapulse_redis_connected", "1 while the Redis connection is up.", registry=r)
        self.redis_buffered = Gauge(
            "alphapulse_redis_buffered_entries",
            "Stream entries waiting to be written to Redis.", registry=r)
        self.redis_dropped = Counter(
            "alphapulse_redis_dropped_entries",
            "Stream entries dropped because the Redis write buffer was full.", registry=r)

        # --- http -------------------------------------------------------------------------
        self.http_requests = Counter(
            "alphapulse_http_requests", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=r)
        self.http_duration = Histogram(
            "alphapulse_http_request_duration_seconds", "HTTP request handling time.",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=r)

        # --- arbitrage --------------------------------------------------------------------
        self.arbitrage_opportunities = Counter(
            "alphapulse_arbitrage_opportunities", "Cross-exchange opportunities opened.",
            ["symbol", "buy_exchange", "sell_exchange"], registry=r)
        self.arbitrage_duration = Histogram(
            "alphapulse_arbitrage_duration_seconds", "How long opportunities stayed open.",
            ["symbol"], buckets=ARB_DURATION_BUCKETS, registry=r)
        self.arbitrage_edge = Histogram(
            "alphapulse_arbitrage_edge_bps", "Net edge of opened opportunities, basis points.",
            ["symbol"], buckets=ARB_EDGE_BUCKETS, registry=r)
        self.arbitrage_detection_latency = Histogram(
            "alphapulse_arbitrage_detection_latency_seconds",
            "Time from the triggering frame's receipt to the opportunity being detected.",
            buckets=LATENCY_BUCKETS, registry=r)

        if process:
            ProcessCollector(registry=r)
            r.register(GcCollector())

        # Hot path: per (exchange, symbol), the processing-latency bucket counts of its book
        # updates and of its trades, one list each (see ``on_event``).  The counters are those
        # lists' totals, added to the Counter families at scrape time (``Counter.inc`` takes a
        # lock and costs ~1 µs).
        latency = self.processing_latency
        self._updates = latency.group()
        self._trades = latency.group()
        self.on_event = LatencyTally(latency.bounds_ns, self._updates, self._trades,
                                     latency.new_series, self._count_other).on_event
        self._flushed: dict[tuple[str, str, str], int] = {}
        self._seen_snapshot: set[tuple[str, str]] = set()

    # --- hot path ---------------------------------------------------------------------------

    #: Count one collector event and record its frame-receipt-to-publication time (a hub
    #: subscriber, never blocks; the server registers it last, so the time covers every other
    #: subscriber's work).  Compiled (``_dispatch.LatencyTally``): a BookUpdate or Trade is one
    #: lookup, a clock read, a bucket search and two list updates; anything else goes to
    #: ``_count_other``.
    on_event: Callable[[Any], None]

    def _count_other(self, event: Any) -> None:
        ts_recv = getattr(event, "ts_recv", 0)
        if ts_recv:
            self.processing_latency.observe_ns(event.exchange, time.time_ns() - ts_recv)
        if isinstance(event, BookUpdate):        # subclasses: counted, off the fast path
            self.book_updates.labels(event.exchange, event.symbol).inc()
        elif isinstance(event, Trade):
            self.trades_processed.labels(event.exchange, event.symbol).inc()
        elif isinstance(event, BookSnapshot):
            key = (event.exchange, event.symbol)
            self.book_snapshots.labels(*key).inc()
            if key in self._seen_snapshot:
                self.resyncs.labels(event.exchange).inc()
            else:
                self._seen_snapshot.add(key)
        elif isinstance(event, Gap):
            self.gaps.labels(event.exchange, event.reason).inc()
        elif isinstance(event, Rejected):
            self.rejected_messages.labels(event.exchange, event.reason).inc()

    def _flush(self) -> None:
        """Add the hot path's new counts to the Counter families (before a scrape)."""
        flushed = self._flushed
        for name, group, family in (("t", self._trades, self.trades_processed),
                                    ("u", self._updates, self.book_updates)):
            for (exchange, symbol), series in group.items():
                total = sum(series) - series[-1]
                done = flushed.get((name, exchange, symbol), 0)
                if total != done:
                    family.labels(exchange, symbol).inc(total - done)
                    flushed[(name, exchange, symbol)] = total

    # --- wiring -----------------------------------------------------------------------------

    def bind_store(self, sizes: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        """Export the trade store's sizes, read at scrape time.

        ``sizes()`` yields ``(exchange, symbol, trades, bars)``; ``TradeStore.sizes`` fits.
        """
        self.registry.register(_StoreCollector(sizes))

    def render(self) -> tuple[bytes, str]:
        """The exposition text for ``/metrics`` and its content type."""
        self._flush()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
