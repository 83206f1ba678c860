"""``alphapulse replay`` as a real process: a collector pointed at its URL syncs and verifies."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from alphapulse.exchanges.kraken import KrakenCollector


async def _serve_and_collect(args: list[str], until_checksums: int) -> tuple[dict, str]:
    proc = subprocess.Popen([sys.executable, "-m", "alphapulse.cli", "replay", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        url = line.split(" ws ")[1].split()[0]
        collector = KrakenCollector(["BTC-USD"], url=url, backoff_initial=0.05)
        task = asyncio.create_task(collector.run())
        for _ in range(600):
            await asyncio.sleep(0.05)
            if collector.stats["checksum_ok"] + collector.stats["checksum_failed"] >= until_checksums:
                break
        await asyncio.sleep(1.2)                       # idle heartbeats keep it open
        stats = collector.stats
        await collector.stop()
        await task
        return stats, url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_replay_process_serves_v2(fixtures_dir: Path) -> None:
    path = fixtures_dir / "generated" / "kraken-clean.jsonl"
    truth = json.loads((fixtures_dir / "generated" / "kraken-clean.truth.json").read_text())
    stats, url = await _serve_and_collect(["--exchange", "kraken", "--max", str(path)], 5001)
    assert url.startswith("ws://127.0.0.1:") and url.endswith("/v2")
    assert (stats["checksum_ok"], stats["checksum_failed"]) == (5001, 0)
    assert stats["trades"] == truth["trades"] and stats["reconnects"] == 0
    assert stats["connected"] is True                  # still open after the last message


async def test_replay_process_serves_v1_at_speed(fixtures_dir: Path) -> None:
    path = fixtures_dir / "kraken" / "v1-book-xbtusd-depth10-2023-08-30.jsonl"
    # The capture spans ~2 minutes of exchange time; at 100x it takes about a second.
    stats, url = await _serve_and_collect(["--exchange", "kraken", "--speed", "100", str(path)],
                                          979)
    assert not url.endswith("/v2")
    assert (stats["checksum_ok"], stats["checksum_failed"], stats["gaps"]) == (979, 0, 0)


def test_replay_rejects_bad_arguments(tmp_path: Path, fixtures_dir: Path) -> None:
    def run(*args: str) -> int:
        return subprocess.run([sys.executable, "-m", "alphapulse.cli", "replay", *args],
                              capture_output=True, timeout=60).returncode
    path = str(fixtures_dir / "generated" / "kraken-clean.jsonl")
    assert run("--exchange", "kraken", str(tmp_path / "nope.jsonl")) == 2
    assert run("--exchange", "kraken", "--fault", "explode=1", path) == 2
    assert run("--exchange", "kraken", "--speed", "2", "--max", path) == 2
    assert run("--exchange", "kraken", "--speed", "0", path) == 2


@pytest.mark.parametrize("spec, expected", [
    ("drop_connection_at=100:900,rest_errors=429:418", dict(drop_connection_at=frozenset({100, 900}),
                                                            rest_errors=(429, 418))),
    ("silent_at=5,silent_for=0.5,abrupt=false", dict(silent_at=5, silent_for=0.5, abrupt=False)),
])
def test_fault_specs(spec: str, expected: dict) -> None:
    from alphapulse.replay import Faults
    faults = Faults.parse(spec)
    assert {k: getattr(faults, k) for k in expected} == expected
