# cython: language_level=3, boundscheck=False, wraparound=False
"""The server's per-event work that every event pays: the hub's hand-out to its subscribers
and the metrics' processing-latency tally.

Both ran as Python, about 1.5 µs of every event between them (a Python loop calling each
subscriber, then a lookup, a bisect and two list updates).  Here the loop is a C loop over a
tuple of callables and the tally reads the clock and finds the bucket in C; what they do is
unchanged.  Nothing here knows of asyncio: the hub and the metrics own the state (their
routes, their series) and this module works on it.
"""
from libc.stdint cimport int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME

from alphapulse.events import BookUpdate, Trade

cdef enum:
    MAX_BOUNDS = 32


cdef inline int64_t _now_ns() noexcept nogil:
    # time.time_ns() is clock_gettime(CLOCK_REALTIME): the clock ts_recv is stamped with.
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class Dispatch:
    """The hub's routes and its ``publish``: every callback routed for the event's class, in
    order.  A callback that raises goes to ``failed(callback, exc)`` and the others still run.
    ``route(cls)`` builds (and stores in ``routes``) the tuple for a class not seen yet."""

    cdef readonly dict routes
    cdef object _route
    cdef object _failed

    def __init__(self, route, failed):
        self.routes = {}
        self._route = route
        self._failed = failed

    def publish(self, event):
        """Hand ``event`` to every subscriber that wants it."""
        cdef object cls = type(event)
        cdef object callbacks = self.routes.get(cls)
        if callbacks is None:
            callbacks = self._route(cls)
        for callback in <tuple>callbacks:
            try:
                callback(event)
            except Exception as exc:   # one broken subscriber must not stop the feed
                self._failed(callback, exc)


cdef class LatencyTally:
    """Frame receipt -> now, per (exchange, symbol), into bucket-count lists.

    ``updates`` and ``trades`` map ``(exchange, symbol)`` to a list of counts, one per bound
    (``v <= bound``, Prometheus' ``le``), then +Inf, then the sum of the values in ns; a new key
    gets ``new_series()``.  Events of any other class go to ``other(event)``.
    """

    cdef dict _updates
    cdef dict _trades
    cdef object _new_series
    cdef object _other
    cdef int64_t _bounds[MAX_BOUNDS]
    cdef Py_ssize_t _nbounds

    def __init__(self, bounds_ns, dict updates, dict trades, new_series, other):
        bounds = tuple(bounds_ns)
        if len(bounds) > MAX_BOUNDS:
            raise ValueError(f"at most {MAX_BOUNDS} bounds")
        self._nbounds = len(bounds)
        for i, bound in enumerate(bounds):
            self._bounds[i] = bound
        self._updates = updates
        self._trades = trades
        self._new_series = new_series
        self._other = other

    def on_event(self, event):
        """Count one event and record its frame-receipt-to-now time."""
        cdef object cls = type(event)
        cdef dict group
        if cls is BookUpdate:
            group = self._updates
        elif cls is Trade:
            group = self._trades
        else:
            self._other(event)
            return
        key = (event.exchange, event.symbol)
        series = group.get(key)
        if series is None:
            series = group[key] = self._new_series()
        cdef int64_t value = _now_ns() - <int64_t>event.ts_recv
        if value < 0:
            value = 0
        cdef Py_ssize_t i = 0
        while i < self._nbounds and self._bounds[i] < value:
            i += 1
        cdef list counts = series
        counts[i] += 1
        counts[len(counts) - 1] += value
