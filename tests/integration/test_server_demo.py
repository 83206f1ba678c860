"""``alphapulse-server --demo`` as a real process: books, trades and arbitrage within seconds from
the bundled captures, then a clean exit on SIGTERM (rings unlinked, child process gone)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

SERVE_RE = re.compile(r"serving on http://[^:]+:(\d+)")


class ServerProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alphapulse.server.cli", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.port: int | None = None
        self._found = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = SERVE_RE.search(line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._found.set()

    def wait_listening(self, timeout: float = 30) -> str:
        if not self._found.wait(timeout):
            self.proc.kill()
            raise AssertionError("server did not start:\n" + "".join(self.lines[-30:]))
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("server did not exit:\n" + "".join(self.lines[-30:])) from None


def _wait_for(client: httpx.Client, path: str, params: dict[str, str], ok, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(path, params=params)
        if resp.status_code == 200 and ok(resp.json()):
            return resp.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} {params}: {resp.status_code} {resp.text[:300]}")
        time.sleep(0.2)


@pytest.mark.parametrize("processes, loop", [("1", "uvloop"), ("1", "asyncio"), ("2", "auto")])
def test_demo_shows_books_trades_arbitrage_then_exits_cleanly(processes: str, loop: str,
                                                              tmp_path: Path) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    server = ServerProcess("--demo", "--port", "0", "--log-level", "info", "--loop", loop,
                           "--processes", processes, "--shm-dir", str(shm))
    try:
        base = server.wait_listening()
        expected_loop = "asyncio" if loop == "asyncio" else "uvloop"
        assert any(f"{expected_loop} event loop" in line for line in server.lines), server.lines
        with httpx.Client(base_url=base, timeout=5) as client:
            for exchange in ("kraken", "coinbase", "binanceus"):
                book = _wait_for(client, "/book/BTC-USD", {"exchange": exchange},
                                 lambda b: bool(b["bids"]) and bool(b["asks"]))
                assert not book["crossed"]
            trades = _wait_for(client, "/trades/BTC-USD/recent", {"exchange": "kraken"},
                               lambda t: len(t["data"]) > 0)
            assert float(trades["data"][0]["price"]) > 90_000
            # Coinbase sits ~2.6% above the others in the demo captures.
            arb = _wait_for(client, "/arbitrage/BTC-USD", {}, lambda a: len(a["data"]) > 0)
            first = arb["data"][0]
            assert first["sell_exchange"] == "coinbase"
            assert first["buy_exchange"] in ("kraken", "binanceus")
            # (With --processes 2 the collectors' state arrives a few times a second.)
            # A local strategy attaches by name and mirrors the book over shared memory.
            from alphapulse import BookUpdate
            from alphapulse.feed import attach
            with attach("default", ["book:kraken:BTC-USD"], directory=shm) as feed:
                deadline = time.monotonic() + 10
                while True:
                    event = feed.next(timeout=1.0)
                    mirror = feed.book("kraken", "BTC-USD")
                    if isinstance(event, BookUpdate) and mirror is not None \
                            and feed.synced("kraken", "BTC-USD"):
                        break
                    assert time.monotonic() < deadline, event
                assert mirror.best_bid() is not None and not mirror.crossed
            health = _wait_for(client, "/health", {},
                               lambda h: all(e["connected"] for e in h["exchanges"].values()))
            assert set(health["exchanges"]) == {"kraken", "coinbase", "binanceus"}
            assert health["healthy"] is True
            # Start-up objects frozen out of the collector's reach (server/gcpause.py).
            metrics = client.get("/metrics").text
            frozen = re.search(r"^alphapulse_gc_frozen_objects (\S+)$", metrics, re.M)
            assert frozen is not None and float(frozen.group(1)) > 10_000
            # Each exchange's events timed from frame receipt to the end of publication.
            timed = re.findall(r'^alphapulse_processing_latency_seconds_count'
                               r'\{exchange="(\w+)"\} (\S+)$', metrics, re.M)
            assert {ex for ex, n in timed if float(n) > 0} == {"kraken", "coinbase", "binanceus"}
    finally:
        code = server.stop()
    assert code == 0, "".join(server.lines[-30:])
    assert list(shm.iterdir()) == []          # every ring file unlinked
    assert not any("Traceback" in line for line in server.lines), "".join(server.lines)


def test_split_mode_reports_a_dead_collector_process(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    server = ServerProcess("--demo", "--port", "0", "--processes", "2", "--log-level", "info",
                           "--exchanges", "kraken", "--shm-dir", str(tmp_path))
    try:
        base = server.wait_listening()
        with httpx.Client(base_url=base, timeout=5) as client:
            _wait_for(client, "/book/BTC-USD", {"exchange": "kraken"}, lambda b: bool(b["bids"]))
            children = psutil.Process(server.proc.pid).children()
            collectors = [c for c in children if "python" in c.name().lower()]
            assert collectors, children
            for child in collectors:
                child.kill()
            deadline = time.monotonic() + 10
            while True:
                resp = client.get("/health")
                if resp.status_code == 503:
                    break
                assert time.monotonic() < deadline, resp.text
                time.sleep(0.1)
            assert resp.json()["exchanges"]["kraken"]["connected"] is False
    finally:
        code = server.stop()
    assert code == 0, "".join(server.lines[-30:])
    assert list(tmp_path.iterdir()) == []
