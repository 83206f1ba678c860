"""Exchange collectors: the registry.  Adding an exchange = one line in ``_REGISTRY``.

Modules are imported on first use, so a missing or broken exchange module only affects that
exchange (and ``import alphapulse.exchanges`` stays cheap).
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import FeedParser, MarketDataCollector

# exchange name -> "module:CollectorClass" (module relative to this package)
_REGISTRY: dict[str, str] = {
    "coinbase": "coinbase:CoinbaseCollector",
    "kraken": "kraken:KrakenCollector",
    "binanceus": "binanceus:BinanceUSCollector",
}


class _Collectors(Mapping[str, "type[MarketDataCollector]"]):
    """``COLLECTORS[name]`` imports the exchange module on first access."""

    def __getitem__(self, name: str) -> type[MarketDataCollector]:
        try:
            target = _REGISTRY[name]
        except KeyError:
            raise KeyError(f"unknown exchange {name!r}; known: {', '.join(_REGISTRY)}") from None
        module_name, _, cls_name = target.partition(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        return getattr(module, cls_name)

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY


COLLECTORS: Mapping[str, type[MarketDataCollector]] = _Collectors()
EXCHANGES: tuple[str, ...] = tuple(_REGISTRY)


def get_collector(name: str) -> type[MarketDataCollector]:
    """The collector class for an exchange name (``"coinbase"``, ``"kraken"``, ``"binanceus"``)."""
    return COLLECTORS[name]


def get_parser(name: str) -> type[FeedParser]:
    """The sans-IO parser class the exchange's collector uses (for verify and tests)."""
    return COLLECTORS[name].parser_class


__all__ = ["COLLECTORS", "EXCHANGES", "get_collector", "get_parser"]
