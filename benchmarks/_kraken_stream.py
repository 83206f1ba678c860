"""A larger Kraken book stream for the ingest benchmark: one simulated BTC/USD market rendered
as both v2 frames (JSON numbers, CRC at precision 1/8) and v1 frames (strings, CRC over them).

Independent of alphapulse's parser: integer prices/sizes, text written from the integers, CRC32
computed here from Kraken's documented rule, so the benchmark also re-checks exactness.
"""
from __future__ import annotations

import random
import zlib

DEPTH = 25          # subscribed depth (the client truncates to it)
FULL = 60           # levels per side the "exchange" keeps
TICK = 1            # price unit = 0.1 USD (v2 price_precision 1)


def _p2(p: int) -> str:            # v2 price text, precision 1
    return f"{p // 10}.{p % 10}"


def _p1(p: int) -> str:            # v1 price text, 5 decimals
    return f"{p // 10}.{p % 10}0000"


def _q(q: int) -> str:             # size text, 8 decimals (both versions)
    return f"{q // 10**8}.{q % 10**8:08d}"


def _crc(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    s = "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")
                for p, q in asks[:10] + bids[:10])
    return zlib.crc32(s.encode())


class _Market:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        mid = 965120
        self.bids = {mid - i: rng.randint(10**5, 5 * 10**8) for i in range(1, FULL + 1)}
        self.asks = {mid + i: rng.randint(10**5, 5 * 10**8) for i in range(0, FULL)}

    def view(self, side: dict[int, int], is_bid: bool) -> dict[int, int]:
        return {p: side[p] for p in sorted(side, reverse=is_bid)[:DEPTH]}

    def step(self) -> tuple[bool, list[tuple[int, int]]]:
        """Mutate one side; returns (is_bid, changed levels within the subscribed view)."""
        rng = self.rng
        is_bid = rng.random() < 0.5
        side = self.bids if is_bid else self.asks
        before = self.view(side, is_bid)
        ordered = sorted(side, reverse=is_bid)
        r = rng.random()
        if r < 0.55:                                   # size change near the top
            p = ordered[min(int(rng.expovariate(0.25)), DEPTH - 1)]
            side[p] = rng.randint(10**5, 5 * 10**8)
        elif r < 0.8 and len(side) > DEPTH + 5:        # a level disappears
            p = ordered[min(int(rng.expovariate(0.25)), DEPTH - 1)]
            del side[p]
            far = ordered[-1] - 1 if is_bid else ordered[-1] + 1
            side[far] = rng.randint(10**5, 5 * 10**8)
        else:                                          # a new level inside the spread or book
            best_other = max(self.bids) if not is_bid else min(self.asks)
            k = int(rng.expovariate(0.6)) - 1
            p = ordered[0] - k if is_bid else ordered[0] + k
            if is_bid and p >= best_other:
                p = best_other - 1
            if not is_bid and p <= best_other:
                p = best_other + 1
            side[p] = rng.randint(10**5, 5 * 10**8)
            while len(side) > FULL:
                del side[min(side) if is_bid else max(side)]
        after = self.view(side, is_bid)
        # Deletions first, then new/changed levels: Kraken's own order (see the 2023 captures).
        changes = [(p, 0) for p in before if p not in after and p not in side]
        changes += [(p, q) for p, q in after.items() if before.get(p) != q]
        return is_bid, changes


def generate(n: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """``n`` book updates after one snapshot: (v2 frames, v1 frames), same market."""
    rng = random.Random(seed)
    m = _Market(rng)
    v2: list[bytes] = []
    v1: list[bytes] = [b'{"connectionID":1,"event":"systemStatus","status":"online","version":"1.9.1"}',
                       b'{"channelID":336,"channelName":"book-25","event":"subscriptionStatus",'
                       b'"pair":"XBT/USD","status":"subscribed","subscription":{"depth":25,"name":"book"}}']
    views = {True: m.view(m.bids, True), False: m.view(m.asks, False)}

    def top(is_bid: bool, price) -> list[tuple[str, str]]:  # noqa: ANN001
        return [(price(p), _q(q)) for p, q in list(views[is_bid].items())[:10]]

    tops2 = {s: top(s, _p2) for s in (True, False)}
    tops1 = {s: top(s, _p1) for s in (True, False)}
    bids, asks = views[True], views[False]
    crc2 = _crc(tops2[False], tops2[True])
    lv = lambda levels: ",".join(f'{{"price":{_p2(p)},"qty":{_q(q)}}}' for p, q in levels.items())  # noqa: E731
    v2.append((f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{lv(bids)}],'
               f'"asks":[{lv(asks)}],"checksum":{crc2},"timestamp":"2026-11-27T10:00:00.000000Z"}}]}}').encode())
    l1 = lambda levels: ",".join(f'["{_p1(p)}","{_q(q)}","1795773600.000000"]' for p, q in levels.items())  # noqa: E731
    v1.append(f'[336,{{"as":[{l1(asks)}],"bs":[{l1(bids)}]}},"book-25","XBT/USD"]'.encode())
    t_us = 0
    while len(v2) <= n:
        is_bid, changes = m.step()
        if not changes:
            continue
        t_us += rng.randint(50, 5000)
        views[is_bid] = m.view(m.bids if is_bid else m.asks, is_bid)
        tops2[is_bid], tops1[is_bid] = top(is_bid, _p2), top(is_bid, _p1)
        sec, us = divmod(t_us, 10**6)
        stamp = f"2026-11-27T10:{sec // 60 % 60:02d}:{sec % 60:02d}.{us:06d}Z"
        body = ",".join(f'{{"price":{_p2(p)},"qty":{_q(q)}}}' for p, q in changes)
        b, a = (body, "") if is_bid else ("", body)
        v2.append((f'{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{b}],'
                   f'"asks":[{a}],"checksum":{_crc(tops2[False], tops2[True])},"timestamp":"{stamp}"}}]}}'
                   ).encode())
        levels = ",".join(f'["{_p1(p)}","{_q(q)}","{1795773600 + sec}.{us:06d}"]' for p, q in changes)
        key = "b" if is_bid else "a"
        v1.append(f'[336,{{"{key}":[{levels}],"c":"{_crc(tops1[False], tops1[True])}"}},"book-25",'
                  f'"XBT/USD"]'.encode())
    return v2, v1
