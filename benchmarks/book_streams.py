"""Book update streams for the benchmarks: one generated (fixed seed), two real.

Every stream is ``(snapshot_bids, snapshot_asks, messages, precisions)`` where levels and
changes are decimal *text* exactly as an exchange sends them, and ``messages`` is a list of
batches of ``(side, price, size)`` changes (one batch = one exchange message).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@dataclass
class Stream:
    name: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    messages: list[list[tuple[str, str, str]]]
    price_precision: int
    size_precision: int
    depth: int = 0

    @property
    def changes(self) -> list[tuple[str, str, str]]:
        return [c for m in self.messages for c in m]


def _size_text(rng: random.Random) -> str:
    # Real books mix round lots (0.1, 1.0, 0.001) with arbitrary 8-decimal sizes.
    if rng.random() < 0.3:
        return rng.choice(["0.001", "0.01", "0.1", "0.5", "1", "2", "0.25"])
    return f"{rng.randint(1, 300_000_000) / 1e8:.8f}"


def generated(n_updates: int = 200_000, levels: int = 1000, seed: int = 20260809,
              delete_share: float = 0.15, mean_distance: float = 6.0) -> Stream:
    """A BTC-USD-like stream: 1000 levels a side one tick (0.01) apart; each update picks a
    side, a distance from the best level drawn from an exponential distribution (most
    updates land in the top few levels), and either deletes an existing level
    (``delete_share``) or sets a size (a new level when the price is empty).  Batches of
    1..20 changes, like exchange messages."""
    rng = random.Random(seed)
    mid = 6_500_000   # 65000.00 at precision 2
    book = {0: {mid - 1 - i: _size_text(rng) for i in range(levels)},
            1: {mid + 1 + i: _size_text(rng) for i in range(levels)}}
    bids = [(f"{p / 100:.2f}", s) for p, s in sorted(book[0].items(), reverse=True)]
    asks = [(f"{p / 100:.2f}", s) for p, s in sorted(book[1].items())]
    best = {0: mid - 1, 1: mid + 1}
    changes: list[tuple[str, str, str]] = []
    names = ("bid", "ask")
    while len(changes) < n_updates:
        side = rng.getrandbits(1)
        levels_here = book[side]
        distance = int(rng.expovariate(1.0 / mean_distance))
        if rng.random() < delete_share and len(levels_here) > 10:
            price = best[side] - distance if side == 0 else best[side] + distance
            if price not in levels_here:
                # the nearest existing level at or beyond that distance
                worst = min(levels_here) if side == 0 else max(levels_here)
                if (side == 0 and price < worst) or (side == 1 and price > worst):
                    price = worst
                step = -1 if side == 0 else 1
                while price not in levels_here:
                    price += step
            del levels_here[price]
            changes.append((names[side], f"{price / 100:.2f}", "0"))
            if price == best[side]:
                best[side] = max(levels_here) if side == 0 else min(levels_here)
            continue
        # Sometimes improve the best price (inside the spread), otherwise near the top.
        if rng.random() < 0.05 and best[1] - best[0] > 1:
            price = best[side] + 1 if side == 0 else best[side] - 1
        else:
            price = best[side] - distance if side == 0 else best[side] + distance
        size = _size_text(rng)
        levels_here[price] = size
        if (side == 0 and price > best[0]) or (side == 1 and price < best[1]):
            best[side] = price
        changes.append((names[side], f"{price / 100:.2f}", size))
    messages = []
    i = 0
    while i < len(changes):
        k = rng.randint(1, 20)
        messages.append(changes[i:i + k])
        i += k
    return Stream(f"generated ({levels}/side, seed {seed})", bids, asks, messages, 2, 8)


def coinbase(product: str = "BTC-USD") -> Stream:
    """The real Advanced Trade capture: a 46,000-level BTC-USD snapshot, then updates."""
    path = FIXTURES / "coinbase" / "advanced-trade-btcusd-ethusd-2026-08-09.jsonl"
    bids: list[tuple[str, str]] = []
    asks: list[tuple[str, str]] = []
    messages = []
    side_name = {"bid": "bid", "offer": "ask"}
    for line in path.open():
        msg = json.loads(line)
        if msg.get("channel") != "l2_data":
            continue
        for event in msg["events"]:
            if event["product_id"] != product:
                continue
            if event["type"] == "snapshot":
                for u in event["updates"]:
                    (bids if u["side"] == "bid" else asks).append(
                        (u["price_level"], u["new_quantity"]))
            else:
                messages.append([(side_name[u["side"]], u["price_level"], u["new_quantity"])
                                 for u in event["updates"]])
    return Stream(f"coinbase {product} (real)", bids, asks, messages, 2, 8)


def kraken(name: str = "kraken-clean") -> Stream:
    """A generated Kraken v2 capture (depth 25), numbers kept as their JSON text."""
    path = FIXTURES / "generated" / f"{name}.jsonl"
    bids: list[tuple[str, str]] = []
    asks: list[tuple[str, str]] = []
    messages = []
    for line in path.open():
        msg = json.loads(line, parse_float=str, parse_int=str)
        if msg.get("channel") != "book":
            continue
        for data in msg["data"]:
            if msg["type"] == "snapshot":
                bids = [(lv["price"], lv["qty"]) for lv in data["bids"]]
                asks = [(lv["price"], lv["qty"]) for lv in data["asks"]]
            else:
                messages.append([("bid", lv["price"], lv["qty"]) for lv in data["bids"]]
                                + [("ask", lv["price"], lv["qty"]) for lv in data["asks"]])
    return Stream(f"kraken v2 BTC/USD depth 25 ({name})", bids, asks, messages, 1, 8, 25)
