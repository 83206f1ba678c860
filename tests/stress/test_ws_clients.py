"""Issue 7 §8 / issue 5: many WebSocket clients, some of which stop reading.

Driven by ``benchmarks/_ws_load.py`` (the same driver as ``benchmarks/ws_fanout.py`` and
``scripts/load-test clients``): a real server process fed by replays, clients as raw sockets in
two worker processes.  Asserted: every stalled client is closed with 1008 within 5 s of stalling
(the server's own counter times it), and finds the close frame after its backlog; no healthy
client is closed; healthy clients keep receiving in both phases; server RSS stays bounded.
Latency is reported, not asserted (the machine is shared).

Also ``scripts/load-test clients`` end to end (it calls the same driver).  Long form
(``-m slow``): 500 clients, 10 stalled; the documented command for the numbers is
``flock /tmp/ap-bench.lock .venv/bin/python benchmarks/ws_fanout.py --clients 500 --stalled 10``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _ws_load  # noqa: E402


def _check(result: dict, stalled: int) -> None:
    print(_ws_load.markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}))
    base, with_stalled = result["phases"]["baseline"], result["phases"]["with_stalled"]
    assert result["healthy_closed"] == []
    assert result["stalled_closed_1008"] == stalled, result["stalled_close_codes"]
    assert all("client too slow" in r for r in result["stalled_reasons"]), \
        result["stalled_reasons"]
    closes = with_stalled["stalled_close_s"]
    assert len(closes) == stalled and max(closes) < 5.0, closes
    assert base["messages"] > 0 and with_stalled["messages"] > 0
    # Each stalled client may pin at most its kernel + transport buffers until it is closed.
    assert with_stalled["server_rss_max_mib"] < base["server_rss_mib"] + 64


def test_60_clients_6_stalled_closed_within_5s() -> None:
    result = _ws_load.run(clients=60, stalled=6, workers=2, seconds=4.0, warmup=2.0, speed=2.0)
    _check(result, 6)


def test_load_test_script_clients_mode(tmp_path: Path) -> None:
    """``scripts/load-test clients`` is this driver, with its JSON output."""
    out = tmp_path / "clients.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "load-test"), "clients",
                           "--clients", "20", "--stalled", "2", "--seconds", "8",
                           "--json", str(out)], capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| with_stalled | 20 | 2 |" in proc.stdout
    _check(json.loads(out.read_text()), 2)


@pytest.mark.slow
def test_500_clients_10_stalled() -> None:
    result = _ws_load.run(clients=500, stalled=10, workers=2, seconds=20.0, warmup=3.0,
                          speed=1.0)
    _check(result, 10)
