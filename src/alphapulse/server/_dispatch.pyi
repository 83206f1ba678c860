"""Stub for the server's compiled per-event work (``_dispatch.pyx``)."""
from collections.abc import Callable, Iterable
from typing import Any

class Dispatch:
    routes: dict[type, tuple[Callable[[Any], None], ...]]
    def __init__(self, route: Callable[[type], tuple[Callable[[Any], None], ...]],
                 failed: Callable[[Callable[[Any], None], Exception], None]) -> None: ...
    def publish(self, event: Any) -> None: ...

class LatencyTally:
    def __init__(self, bounds_ns: Iterable[int], updates: dict[tuple[str, ...], list[int]],
                 trades: dict[tuple[str, ...], list[int]], new_series: Callable[[], list[int]],
                 other: Callable[[Any], None]) -> None: ...
    def on_event(self, event: Any) -> None: ...
