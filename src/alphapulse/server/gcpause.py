"""Garbage-collector pauses: keep them short, and show them.

A full (generation 2) collection walks every object the collector tracks.  In the server those
are almost all made by imports and start-up (functions, classes, module dicts: ~40k) and never
die, yet each full collection walked them again: 24-67 ms per collection on this VM at 30k-60k
msgs/s (``scripts/load-test ramp``; README), the longest stall on the data path, with every
frame queued behind it.  :func:`freeze_startup_heap` moves them to the permanent generation
once start-up is done (``gc.freeze``, the stdlib's remedy for long-running servers), so a full
collection only walks what came later (~4 ms in the same ramp).

:class:`GcCollector` exports collections and their pause time per generation, and the frozen
object count, so a latency spike can be matched with a collection on a dashboard.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["GcCollector", "freeze_startup_heap"]

_GENERATIONS = (0, 1, 2)
_pause_ns = [0, 0, 0]          # per generation, since the callback was installed
_started = 0


def _on_gc(phase: str, info: dict) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter_ns()
    else:
        _pause_ns[info["generation"]] += time.perf_counter_ns() - _started


def freeze_startup_heap() -> int:
    """Collect once, then freeze every surviving object; the number frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcCollector(Collector):
    """``alphapulse_gc_*`` families, read at scrape time (one process-wide gc callback)."""

    def __init__(self) -> None:
        if _on_gc not in gc.callbacks:
            gc.callbacks.append(_on_gc)

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        collections = CounterMetricFamily(
            "alphapulse_gc_collections", "Garbage collections, by generation.",
            labels=["generation"])
        pauses = CounterMetricFamily(
            "alphapulse_gc_pause_seconds", "Time spent in garbage collections, by generation.",
            labels=["generation"])
        for gen, stats in zip(_GENERATIONS, gc.get_stats()):
            collections.add_metric([str(gen)], stats["collections"])
            pauses.add_metric([str(gen)], _pause_ns[gen] / 1e9)
        yield collections
        yield pauses
        yield GaugeMetricFamily(
            "alphapulse_gc_frozen_objects",
            "Objects moved out of the collector's reach after start-up (gc.freeze).",
            value=gc.get_freeze_count())

    def describe(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily("alphapulse_gc_collections", "", labels=["generation"])
        yield CounterMetricFamily("alphapulse_gc_pause_seconds", "", labels=["generation"])
        yield GaugeMetricFamily("alphapulse_gc_frozen_objects", "")
