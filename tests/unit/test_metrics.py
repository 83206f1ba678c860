"""Metrics: private registries, the declared family list, event counting, the Grafana dashboard."""
from __future__ import annotations

import json
import re
import time
from bisect import bisect_left
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from alphapulse.events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from alphapulse.server._dispatch import LatencyTally
from alphapulse.server.metrics import (
    FAMILY_NAMES,
    LATENCY_BUCKETS,
    PROCESS_FAMILY_NAMES,
    Metrics,
)

_LATENCY_BOUNDS_NS = tuple(round(b * 1e9) for b in LATENCY_BUCKETS)
DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "alphapulse-dashboard.json"


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render()[0].decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _exposed_families(metrics: Metrics) -> set[str]:
    text = metrics.render()[0].decode()
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    return {n for n in names if not n.endswith("_created")}


def _declared() -> set[str]:
    # The TYPE line of a counter family names it without "_total"; of an info, without "_info".
    out = set()
    for name in FAMILY_NAMES + PROCESS_FAMILY_NAMES:
        out.add(name)
    return out


def test_instances_are_independent_and_not_global() -> None:
    a, b = Metrics(), Metrics()
    a.trades_processed.labels("coinbase", "BTC-USD").inc(3)
    assert _samples(a)[("alphapulse_trades_processed_total",
                        (("exchange", "coinbase"), ("symbol", "BTC-USD")))] == 3
    assert not any(name == "alphapulse_trades_processed_total" for name, _ in _samples(b))
    assert REGISTRY.get_sample_value("alphapulse_trades_processed_total",
                                     {"exchange": "coinbase", "symbol": "BTC-USD"}) is None


def test_declared_names_are_exactly_what_is_exposed() -> None:
    metrics = Metrics()
    metrics.bind_store(lambda: [("coinbase", "BTC-USD", 1, 5)])
    exposed = _exposed_families(metrics)
    # TYPE lines use the family name: counters without _total, info without _info.
    normalised = set()
    for name in _declared():
        if name.endswith("_total") and name[: -len("_total")] in exposed:
            name = name[: -len("_total")]
        if name.endswith("_info") and name[: -len("_info")] in exposed:
            name = name[: -len("_info")]
        normalised.add(name)
    assert normalised == exposed


def test_names_follow_prometheus_conventions() -> None:
    text = Metrics().render()[0].decode()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("alphapulse_"):
            continue
        if family.type == "counter":
            assert f"{family.name}_total" in FAMILY_NAMES, family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_bps")), family.name
        assert not family.name.endswith("_ms"), family.name


def test_on_event_counts_and_resyncs() -> None:
    metrics = Metrics(process=False)
    trade = Trade("kraken", "BTC-USD", "BTC/USD", "1.0", "2", "buy", "1", 1, 2)
    for _ in range(3):
        metrics.on_event(trade)
    update = BookUpdate("kraken", "BTC-USD", "BTC/USD", None, 1, 2)  # type: ignore[arg-type]
    metrics.on_event(update)
    snap = BookSnapshot("kraken", "BTC-USD", "BTC/USD", None, 1, 2)  # type: ignore[arg-type]
    metrics.on_event(snap)          # first snapshot: a sync, not a resync
    metrics.on_event(snap)          # second: a resync
    metrics.on_event(Gap("kraken", "BTC-USD", "checksum", "", -1, 3))
    metrics.on_event(Rejected("kraken", "bad_json", "", 3))
    # Every event with a receipt time is timed on arrival here (the last subscriber): 8 so far,
    # received "at" 2-3 ns after the epoch; one more received 20 µs ago.
    metrics.on_event(BookUpdate("kraken", "BTC-USD", "BTC/USD", None,  # type: ignore[arg-type]
                                1, time.time_ns() - 20_000))
    s = _samples(metrics)
    kr = (("exchange", "kraken"), ("symbol", "BTC-USD"))
    assert s[("alphapulse_trades_processed_total", kr)] == 3
    assert s[("alphapulse_book_updates_total", kr)] == 2
    assert s[("alphapulse_book_snapshots_total", kr)] == 2
    assert s[("alphapulse_resyncs_total", (("exchange", "kraken"),))] == 1
    assert s[("alphapulse_gaps_total", (("exchange", "kraken"), ("reason", "checksum")))] == 1
    assert s[("alphapulse_rejected_messages_total",
              (("exchange", "kraken"), ("reason", "bad_json")))] == 1
    assert s[("alphapulse_processing_latency_seconds_count", (("exchange", "kraken"),))] == 9
    assert s[("alphapulse_processing_latency_seconds_bucket",
              (("exchange", "kraken"), ("le", "1e-05")))] == 0
    assert s[("alphapulse_processing_latency_seconds_bucket",
              (("exchange", "kraken"), ("le", "1.0")))] == 1      # the recent one


def test_counts_keep_adding_up_across_scrapes() -> None:
    metrics = Metrics(process=False)
    now = time.time_ns()
    trade = Trade("coinbase", "ETH-USD", "ETH-USD", "1.0", "2", "buy", "1", now, now)
    update = BookUpdate("coinbase", "ETH-USD", "ETH-USD", None, now, now)  # type: ignore[arg-type]
    cb = (("exchange", "coinbase"), ("symbol", "ETH-USD"))
    seen = []
    for rounds in (3, 0, 5):
        for _ in range(rounds):
            metrics.on_event(trade)
            metrics.on_event(update)
            metrics.on_event(update)
        s = _samples(metrics)
        seen.append((s[("alphapulse_trades_processed_total", cb)],
                     s[("alphapulse_book_updates_total", cb)],
                     s[("alphapulse_processing_latency_seconds_count", (("exchange", "coinbase"),))]))
    assert seen == [(3, 6, 9), (3, 6, 9), (8, 16, 24)]


def test_store_sizes_read_at_scrape_time() -> None:
    sizes = [("coinbase", "BTC-USD", 10, 5)]
    metrics = Metrics(process=False)
    metrics.bind_store(lambda: sizes)
    cb = (("exchange", "coinbase"), ("symbol", "BTC-USD"))
    assert _samples(metrics)[("alphapulse_store_trades", cb)] == 10
    sizes[0] = ("coinbase", "BTC-USD", 11, 6)
    assert _samples(metrics)[("alphapulse_store_trades", cb)] == 11
    assert _samples(metrics)[("alphapulse_store_bars", cb)] == 6


def test_process_collector_on_own_registry() -> None:
    s = _samples(Metrics())
    assert s[("process_resident_memory_bytes", ())] > 1_000_000
    assert ("process_cpu_seconds_total", ()) in s
    assert ("process_resident_memory_bytes", ()) not in _samples(Metrics(process=False))


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    exprs.append(next(v["definition"] for v in dash["templating"]["list"] if v["name"] == "job"))
    return exprs


def test_dashboard_uses_exactly_the_declared_names() -> None:
    used = set()
    for expr in _dashboard_exprs():
        for name in re.findall(r"\b((?:alphapulse|process)_[a-z0-9_]+)", expr):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    declared = set(FAMILY_NAMES) | set(PROCESS_FAMILY_NAMES)
    assert used - declared == set(), "dashboard queries undeclared metrics"
    assert declared - used == set(), "declared metrics missing from the dashboard"


def test_dashboard_is_importable_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]


def test_gc_pauses_and_frozen_objects_exported() -> None:
    import gc

    from alphapulse.server.gcpause import freeze_startup_heap

    metrics = Metrics()
    gc.collect()
    samples = _samples(metrics)
    assert samples[("alphapulse_gc_collections_total", (("generation", "2"),))] >= 1
    assert samples[("alphapulse_gc_pause_seconds_total", (("generation", "2"),))] > 0
    try:
        frozen = freeze_startup_heap()
        assert frozen > 1000 and frozen == gc.get_freeze_count()
        assert _samples(metrics)[("alphapulse_gc_frozen_objects", ())] == frozen
    finally:
        gc.unfreeze()


@settings(max_examples=300, deadline=None)
@given(ages=st.lists(st.one_of(
    st.integers(-10**6, 2 * 10**9),
    # just under a bound: with the call's own span the value straddles it
    st.builds(lambda bound, under: bound - under, st.sampled_from(_LATENCY_BOUNDS_NS),
              st.integers(0, 3000))), min_size=1, max_size=20))
def test_latency_tally_buckets_like_bisect(ages: list[int]) -> None:
    """The compiled tally puts a value equal to a bound in that bound's bucket (Prometheus'
    ``le``), a negative one (clock step) in the first, and sums the values: the Python
    ``bisect_left`` reference, with ``now`` frozen so the expected ages are exact."""
    updates: dict[tuple[str, ...], list[int]] = {}
    other: list[object] = []
    tally = LatencyTally(_LATENCY_BOUNDS_NS, updates, {}, lambda: [0] * (len(_LATENCY_BOUNDS_NS) + 2),
                         other.append)
    expected = [0] * (len(_LATENCY_BOUNDS_NS) + 2)
    for age in ages:
        now = time.time_ns()
        event = BookUpdate("kraken", "BTC-USD", "BTC/USD", None, 0, now - age)  # type: ignore[arg-type]
        before = time.time_ns()
        tally.on_event(event)
        spent = time.time_ns() - before
        series = updates[("kraken", "BTC-USD")]
        # The tally read its clock after ``now``: the value is age + d, 0 <= d <= the call's span.
        got = series[-1] - expected[-1]
        lo = max(0, age + (before - now))
        assert lo <= got <= max(0, age + (before - now) + spent)
        expected[bisect_left(_LATENCY_BOUNDS_NS, got)] += 1
        expected[-1] += got
        assert series == expected
    tally.on_event(Gap("kraken", "", "reconnect", "", -1, 1))
    assert len(other) == 1 and sum(series[:-1]) == len(ages)
