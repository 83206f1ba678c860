"""The arb-kraken / arb-coinbase captures through the real exchange parsers into the detector.

One simulated BTC-USD market seen on two exchanges, Coinbase ~2.6% above Kraken throughout.
The frames of both captures are fed, interleaved one for one, to the collectors' own sans-IO
parsers (``exchanges.get_parser``), whose events go to ``ArbitrageDetector.on_event``; each
frame gets a receive time 10 ms after the previous one and the detector's clock is that replay
time, so every figure below is exact.  The interleaving puts Coinbase's snapshot (its 2nd
frame) before Kraken's (its 3rd), so the opportunity opens on Kraken's snapshot against
Coinbase's untouched snapshot: the expected prices come straight from the capture text.
The last test runs the same captures over loopback: replay servers, the real collectors' read
loops, real WebSocket connections.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from alphapulse.arbitrage import ArbitrageDetector, Opportunity
from alphapulse.events import BookSnapshot, Gap

T0 = 1_800_000_000_000_000_000
STEP = 10_000_000          # 10 ms between frames
SYMBOL = "BTC-USD"

get_parser = pytest.importorskip("alphapulse.exchanges").get_parser


class Replay:
    """Both captures through real parsers into one detector, on a replay clock."""

    def __init__(self, fixtures: Path, *, drop: dict[str, set[int]] | None = None,
                 pause: tuple[str, int, int] | None = None, **detector: Any) -> None:
        self.now = T0
        self.detector = ArbitrageDetector(clock=lambda: self.now, **detector)
        self.events: list[Opportunity] = []
        self.gaps: list[Gap] = []
        self.snapshots: list[str] = []
        self.parsers = {name: get_parser(name)([SYMBOL], sink=self._sink)
                        for name in ("kraken", "coinbase")}
        gen = fixtures / "generated"
        self.frames = {name: (gen / f"arb-{name}.jsonl").read_bytes().splitlines()
                       for name in ("kraken", "coinbase")}
        self.drop = drop or {}
        self.pause = pause       # (exchange, from frame index, rounds of silence)

    def _sink(self, event: Any) -> None:
        if type(event) is Gap:
            self.gaps.append(event)
        elif type(event) is BookSnapshot:
            self.snapshots.append(event.exchange)
        self.events.extend(self.detector.on_event(event))

    def schedule(self) -> list[tuple[int, str, int]]:
        """(slot, exchange, frame index): round i sends Kraken's frame i in slot 2i+1 and
        Coinbase's in slot 2i+2; a pause delays one exchange's frames from an index on."""
        slots = []
        for name, first in (("kraken", 1), ("coinbase", 2)):
            for i in range(len(self.frames[name])):
                slot = 2 * i + first
                if self.pause and name == self.pause[0] and i >= self.pause[1]:
                    slot += 2 * self.pause[2]
                slots.append((slot, name, i))
        return sorted(slots)

    def run(self) -> ArbitrageDetector:
        for slot, name, i in self.schedule():
            self.now = T0 + slot * STEP
            if i in self.drop.get(name, ()):
                continue
            self.parsers[name].feed(self.frames[name][i], self.now)
        return self.detector


def _snapshot_top(fixtures: Path) -> dict[str, Any]:
    """Best ask of Kraken's and best bid of Coinbase's snapshot, read from the capture text."""
    gen = fixtures / "generated"
    kraken = [json.loads(line) for line in (gen / "arb-kraken.jsonl").read_text().splitlines()[:3]]
    book = next(m for m in kraken if m.get("channel") == "book")["data"][0]
    ask = min(book["asks"], key=lambda lvl: lvl["price"])
    coinbase = json.loads((gen / "arb-coinbase.jsonl").read_text().splitlines()[1])
    bids = [u for u in coinbase["events"][0]["updates"] if u["side"] == "bid"]
    bid = max(bids, key=lambda u: Fraction(u["price_level"]))
    return {"ask": (f"{ask['price']:.1f}", f"{ask['qty']:.8f}"),
            "bid": (bid["price_level"], bid["new_quantity"])}


def test_one_opportunity_buy_kraken_sell_coinbase_for_the_whole_replay(fixtures_dir: Path) -> None:
    replay = Replay(fixtures_dir)
    det = replay.run()
    top = _snapshot_top(fixtures_dir)
    assert top["ask"] == ("96512.4", "0.34659480") and top["bid"] == ("99049.99", "0.33061890")
    assert replay.gaps == [] and sorted(replay.snapshots) == ["coinbase", "kraken"]

    (opp,) = replay.events                        # one open, never a repeat, never closed
    assert opp.status == "open" and opp.symbol == SYMBOL
    assert (opp.buy_exchange, opp.buy_price, opp.buy_size) == ("kraken", *top["ask"])
    assert (opp.sell_exchange, opp.sell_price, opp.sell_size) == ("coinbase", *top["bid"])
    assert opp.size == "0.33061890"
    ask, bid = Fraction(top["ask"][0]), Fraction(top["bid"][0])
    assert opp.gross_bps == float((bid - ask) / ask * 10_000)
    assert opp.net_bps == float((bid * Fraction(9880, 10_000) - ask * Fraction(10040, 10_000))
                                / ask * 10_000)
    assert 262 < opp.gross_bps < 263 and 99 < opp.net_bps < 100
    assert (opp.buy_fee_bps, opp.sell_fee_bps) == (40.0, 120.0)
    # Kraken's snapshot is frame 5 of the interleaving; Coinbase's frame 4.
    assert opp.detected_ns == opp.trigger_ts_recv == opp.buy_ts_recv == T0 + 5 * STEP
    assert opp.sell_ts_recv == T0 + 4 * STEP and opp.latency_s == 0.0
    # Walk to the 10,000 USD default notional: inside both top levels, so the size is the
    # notional at Kraken's ask rounded down to the 1e-8 size step.
    qty = Fraction(int(Fraction(10_000) / ask * 10**8), 10**8)
    assert Fraction(opp.walk_size) == qty == Fraction("0.10361362")
    assert Fraction(opp.walk_cost) == ask * qty and Fraction(opp.walk_proceeds) == bid * qty
    assert opp.walk_gross_bps == opp.gross_bps and opp.walk_net_bps == opp.net_bps

    (still_open,) = det.open_opportunities()
    assert still_open.id == opp.id and still_open.updates > 1000
    # The mirrors followed both parsers to the capture's final tops (truth files).
    truth_k = json.loads((fixtures_dir / "generated" / "arb-kraken.truth.json").read_text())
    truth_c = json.loads((fixtures_dir / "generated" / "arb-coinbase.truth.json").read_text())
    bbo = det.books[SYMBOL].bbo(now_ns=replay.now)
    venues = bbo["venues"]
    assert (venues["kraken"]["bid"][0], venues["kraken"]["ask"][0]) == (
        truth_k["final_best_bid"], truth_k["final_best_ask"])
    assert (venues["coinbase"]["bid"][0], venues["coinbase"]["ask"][0]) == (
        truth_c["final_best_bid"], truth_c["final_best_ask"])
    assert bbo["bid"]["exchange"] == "coinbase" and bbo["ask"]["exchange"] == "kraken"
    assert bbo["crossed"] is True

    # Both feeds stop: the opportunity ends when the older book passes max_age (5 s).
    (closed,) = det.expire(now_ns=replay.now + 60 * 1_000_000_000)
    oldest = min(venues["kraken"]["ts_recv"], venues["coinbase"]["ts_recv"])
    assert closed.close_reason == "stale" and closed.closed_ns == oldest + 5_000_000_000
    assert closed.duration_s == (closed.closed_ns - opp.detected_ns) / 1e9
    assert det.stats["opened"] == 1 and det.stats["closed"] == 1


def test_fees_above_the_edge_mean_no_opportunity(fixtures_dir: Path) -> None:
    # ~263 bps gross: 100 + 200 * 1.026 bps of fees is more than that.
    replay = Replay(fixtures_dir, fees={"kraken": 100.0, "coinbase": 200.0})
    det = replay.run()
    assert replay.events == [] and det.open_opportunities() == []
    # ...but a threshold is a different knob: defaults plus a 90 bps threshold still open it.
    assert len(Replay(fixtures_dir, threshold_bps=90.0).run().open_opportunities()) == 1
    assert Replay(fixtures_dir, threshold_bps=110.0).run().open_opportunities() == []


def test_a_silent_feed_closes_it_and_its_return_reopens_it(fixtures_dir: Path) -> None:
    # Coinbase says nothing for 1,000 interleaving rounds (20 s of Kraken frames alone); its
    # frames resume afterwards, so it also runs on for 20 s after Kraken's capture has ended.
    replay = Replay(fixtures_dir, pause=("coinbase", 2000, 1000))
    replay.run()
    assert [(o.id, o.status, o.close_reason) for o in replay.events] == [
        (1, "open", None), (1, "closed", "stale"), (2, "open", None), (2, "closed", "stale")]
    opened = [o for o in replay.events if o.status == "open"]
    closed = [o for o in replay.events if o.status == "closed"]
    # It ended 5 s after Coinbase's last frame before the pause (found on Kraken's next top
    # change, not at the end of the pause), and reopened on Coinbase's first frame after it.
    last_before = T0 + (2 * 1999 + 2) * STEP
    first_after = T0 + (2 * 2000 + 2 + 2 * 1000) * STEP
    assert closed[0].closed_ns == last_before + 5_000_000_000
    assert opened[1].detected_ns == opened[1].trigger_ts_recv == first_after
    assert (opened[1].buy_exchange, opened[1].sell_exchange) == ("kraken", "coinbase")
    # The second one ends 5 s after Kraken's last frame (slot 2 * 5394 + 1).
    assert closed[1].closed_ns == T0 + (2 * 5394 + 1) * STEP + 5_000_000_000


def test_a_gap_closes_it_and_a_resyncing_book_gives_no_signal(fixtures_dir: Path) -> None:
    # One Coinbase frame lost mid-stream: the real parser sees the sequence_num jump.
    replay = Replay(fixtures_dir, drop={"coinbase": {2500}})
    det = replay.run()
    assert [g.exchange for g in replay.gaps] == ["coinbase"]
    assert [(o.status, o.close_reason) for o in replay.events] == [("open", None),
                                                                    ("closed", "resyncing")]
    # Offline nothing resnapshots Coinbase: it stays resyncing and nothing reopens.
    assert det.books[SYMBOL].venue("coinbase").state == "resyncing"
    assert det.open_opportunities() == [] and det.stats["suppressed_resyncing"] > 0


# --- the same captures over loopback: replay servers -> real collectors -> detector ----------

def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def test_live_collectors_over_loopback_report_it_once(fixtures_dir: Path,
                                                            loopback_socket: socket.socket) -> None:
    try:
        from alphapulse.replay import exchange_class, serve
        for name in ("kraken", "coinbase"):
            exchange_class(name)
    except ImportError as exc:          # pragma: no cover - until every replay module lands
        pytest.skip(f"replay server not available: {exc}")
    from alphapulse.exchanges import get_collector

    gen = fixtures_dir / "generated"
    # Generous max_age: the two replays run at full speed and may end seconds apart on a busy
    # machine; staleness is tested exactly above.
    det = ArbitrageDetector(max_age_s=120.0)
    collectors: dict[str, Any] = {}
    seen: list[tuple[Opportunity, Any, Any]] = []

    def on_opportunity(opp: Opportunity) -> None:
        # The collectors' own books at the moment of detection (sinks run synchronously).
        seen.append((opp, collectors["kraken"].books[SYMBOL].best_ask(),
                     collectors["coinbase"].books[SYMBOL].best_bid()))

    det.callbacks.append(on_opportunity)
    second = _listening_socket()
    try:
        async with serve("kraken", gen / "arb-kraken.jsonl", max_rate=True,
                         sock=loopback_socket) as kraken, \
                serve("coinbase", gen / "arb-coinbase.jsonl", max_rate=True,
                      sock=second) as coinbase:
            servers = {"kraken": kraken, "coinbase": coinbase}
            for name, server in servers.items():
                collectors[name] = get_collector(name)(
                    [SYMBOL], url=server.ws_url, sink=det.on_event, backoff_initial=0.05,
                    **({"depth": 25} if name == "kraken" else {}))
            tasks = [asyncio.create_task(c.run()) for c in collectors.values()]
            try:
                for name, server in servers.items():
                    await server.wait_done(60)
                    deadline = time.monotonic() + 30
                    while (collectors[name].stats["messages"] < server.messages_sent
                           and time.monotonic() < deadline):
                        await asyncio.sleep(0.05)
            finally:
                for c in collectors.values():
                    await c.stop()
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    finally:
        second.close()

    assert [c.stats["gaps"] for c in collectors.values()] == [0, 0]
    (entry,) = seen                                # one open, nothing else, during the replay
    opp, kraken_ask, coinbase_bid = entry
    assert (opp.status, opp.buy_exchange, opp.sell_exchange) == ("open", "kraken", "coinbase")
    assert (opp.buy_price, opp.buy_size) == kraken_ask
    assert (opp.sell_price, opp.sell_size) == coinbase_bid
    ask, bid = Fraction(opp.buy_price), Fraction(opp.sell_price)
    assert opp.gross_bps == float((bid - ask) / ask * 10_000) and opp.net_bps > 90
    assert opp.latency_s >= 0 and opp.trigger_ts_recv in (opp.buy_ts_recv, opp.sell_ts_recv)
    truth_k = json.loads((gen / "arb-kraken.truth.json").read_text())
    truth_c = json.loads((gen / "arb-coinbase.truth.json").read_text())
    venues = det.books[SYMBOL].bbo()["venues"]
    assert venues["kraken"]["ask"][0] == truth_k["final_best_ask"]
    assert venues["coinbase"]["bid"][0] == truth_c["final_best_bid"]
    (closed,) = det.expire(now_ns=time.time_ns() + 10**12)
    assert closed.id == opp.id and closed.close_reason == "stale" and closed.duration_s > 0
