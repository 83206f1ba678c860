"""Redis stream names and entry ids, shared by the writer and the ``--source redis`` reader.

One stream per exchange and symbol and kind: ``<prefix>:trades:<exchange>:<symbol>`` and
``<prefix>:book:<exchange>:<symbol>``.  Entry ids are ``<ms>-<seq>`` (how the writer chooses
them: :mod:`._redis_writer`); ``_parse_id`` reads one back as ``(ms, seq)``.
"""
from __future__ import annotations


def trades_key(prefix: str, exchange: str, symbol: str) -> str:
    return f"{prefix}:trades:{exchange}:{symbol}"


def book_key(prefix: str, exchange: str, symbol: str) -> str:
    return f"{prefix}:book:{exchange}:{symbol}"


def _parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
