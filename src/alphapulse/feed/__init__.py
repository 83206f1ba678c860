"""A strategy's attachment to a running AlphaPulse server, over shared memory.

::

    import alphapulse.feed

    with alphapulse.feed.attach("default", ["book:kraken:BTC-USD", "trades:*:BTC-USD"]) as feed:
        for event in feed:                       # or: async for event in feed
            if isinstance(event, alphapulse.BookUpdate):
                book = feed.book(event.exchange, event.symbol)   # the mirror, already updated
                print(book.best_bid(), book.best_ask())

How it works: the server (``alphapulse.server.shm.ShmPublisher``) keeps a directory
``<shm dir>/alphapulse-<name>/`` (mode 0700) holding a Unix-domain control socket.  ``attach``
connects to it and asks for channels; the server creates a ring (``alphapulse.ring``, SPSC, drop
policy, mode 0600) for this process alone, writes a snapshot of every subscribed book into it,
and from then on writes each matching event as a ``alphapulse.wire`` record.  The server never
waits for a strategy: when this ring is full it drops records, and the ring tells us exactly how
many (``Overrun``).  The server then writes a fresh snapshot of each of our books before any
further delta of it, so the mirrors recover by themselves; periodic ``Checksum`` records prove a
mirror equals the server's book.  If the server dies, iteration raises ``ProducerGone`` within
a fraction of a second; if it shuts down cleanly, iteration ends.

Channels: ``book:<exchange>:<symbol>``, ``trades:<exchange>:<symbol>`` and
``arbitrage:<symbol>``; ``*`` matches any exchange or symbol.

Low-latency mode: a read that finds the ring empty spins for ``spin_us`` (default 50 µs) and
then sleeps on a futex, so an idle strategy costs no CPU but an event that arrives while it
sleeps waits for the kernel to wake it (tens of µs on a VM, more under load).
``attach(..., spin_us=alphapulse.feed.BUSY_POLL)`` never sleeps: the strategy keeps one core
busy and sees a record within a microsecond or so of its publication, if it has that core to
itself (the server needs one too: on a 2-core machine that is one spinning strategy at most;
on a machine without a spare core the spinner is preempted for whole scheduler slices and does
worse than the default).  While it finds nothing it re-decodes its last record every
``Feed.warm_us`` (100 µs), which keeps the decode path in the CPU caches between records.
``benchmarks/feed_latency.py`` measures both modes against a Unix socket;
``examples/latency_probe.py [--busy-poll]`` shows what a strategy sees.

What sets the busy-poll tail is not the feed's work (~6.5 µs hot, frame to mirror) but the time
the two CPUs on the path are away: a record waits while the strategy's CPU runs something else,
and a frame takes longer when the server's CPU is taken while it parses.  On a VM that includes
the hypervisor: ``benchmarks/feed_tail.py`` measures it, and on the 2-vCPU development VM each
vCPU is away 3-5% of the time (a host interrupt every 1 ms of ~26 µs, the guest's own 250 Hz
tick of ~45 µs, host preemption of 0.1-2 ms), which alone puts the p99 frame -> strategy
above 50 µs there.  For the lowest tail, give the strategy a core of its own and keep everything
else off it: pin it before attaching (``os.sched_setaffinity(0, {3})``, or ``taskset -c 3
python strategy.py``) and the server elsewhere (``taskset -c 0-2 ...``), and on a machine you
control isolate that core from the scheduler and its tick (``isolcpus=3 nohz_full=3`` on the
kernel command line), on bare metal or a VM with dedicated, pinned vCPUs.

The package: :mod:`.protocol` (the control protocol, shared with the server),
:mod:`.mirrors` (records -> events, the mirror books), :mod:`.strategy` (:class:`Feed`, and
:func:`attach`).
"""
from __future__ import annotations

from .. import ring
from ..errors import FeedError
from ..wire import Arbitrage
from .mirrors import FeedEvent, Overrun, Resync
from .protocol import (CHANNEL_KINDS, CONTROL_SOCKET, DEFAULT_CAPACITY, DIR_PREFIX,
                       MAX_CAPACITY, MAX_MESSAGE, MIN_CAPACITY, RING_SUFFIX, SERVER_INFO, WILDCARD,
                       feed_dir, format_channel, parse_channel, send_message)
from .strategy import BUSY_POLL, DEFAULT_SPIN_US, DEFAULT_WARM_US, Feed, attach

__all__ = [
    # the strategy's API
    "attach", "Feed", "FeedEvent", "Overrun", "Resync", "Arbitrage", "FeedError", "BUSY_POLL",
    "DEFAULT_SPIN_US", "DEFAULT_WARM_US", "feed_dir", "parse_channel", "format_channel",
    # the control protocol (the server side imports these too)
    "CHANNEL_KINDS", "CONTROL_SOCKET", "DEFAULT_CAPACITY", "DIR_PREFIX", "MAX_CAPACITY",
    "MAX_MESSAGE", "MIN_CAPACITY", "RING_SUFFIX", "SERVER_INFO", "WILDCARD", "send_message",
    "ring",
]
