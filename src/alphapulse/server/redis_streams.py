"""Redis Streams: the writer (a hub subscriber) and the reader behind ``--source redis``.

Streams, one per exchange and symbol: ``<prefix>:trades:<exchange>:<symbol>`` and
``<prefix>:book:<exchange>:<symbol>``, each trimmed with ``MAXLEN ~``, with explicit entry ids
that strictly increase per stream, so Redis itself refuses a repeat.

This module is the public face; the work is done in:

* :mod:`._redis_keys`: the stream names and entry-id parsing both sides share;
* :mod:`._redis_writer`: ``RedisWriter``, which chooses the entry ids (trades keyed by their
  exchange trade id, book entries by the book's sequence) and buffers through an outage;
* :mod:`._redis_reader`: ``decode_entry`` and ``RedisReader``, which follows the streams and
  publishes their events into the hub;
* :mod:`._redis_tasks`: the reconnection backoff and the bounded stop of both background tasks.
"""
from __future__ import annotations

from ._redis_keys import book_key, trades_key
from ._redis_reader import RedisReader, decode_entry
from ._redis_writer import RedisWriter

__all__ = ["RedisReader", "RedisWriter", "book_key", "decode_entry", "trades_key"]
