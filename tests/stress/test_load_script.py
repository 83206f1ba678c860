"""Issue 7, scenarios 1 and 12 (short forms): ``scripts/load-test`` itself, on loopback.

* ramp: one step at 300x replay speed: every record measured, p99 receipt->publication reported;
* soak: 20 s of replay with RSS sampled every 2 s: bounded (no growth beyond 64 MiB).

Scenario 8 (``scripts/load-test clients``, many and stalled WebSocket clients) is in
tests/stress/test_ws_clients.py.

Long forms (documented in README): ``scripts/load-test ramp``, ``scripts/load-test soak``
(30 min, RSS every 10 s), ``scripts/load-test clients --clients 500 --stalled 10``.
Latency figures are reported, not asserted (the CI machine is shared); the functional outcomes
are asserted.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "load-test"


def _run(tmp_path: Path, *args: str, timeout: float = 150) -> dict:
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    return json.loads(out.read_text())


def test_ramp_step_measures_every_record(tmp_path: Path) -> None:
    result = _run(tmp_path, "ramp", "--speeds", "300")
    (step,) = result["steps"]
    assert step["records"] > 10_000 and step["trades_per_s"] > 0 and step["book_msgs_per_s"] > 0
    assert step["p99_us"] > 0 and step["rss_mib"] > 0


def test_soak_short_rss_bounded(tmp_path: Path) -> None:
    result = _run(tmp_path, "soak", "--minutes", str(20 / 60), "--sample-s", "2",
                  "--speed", "20")
    assert result["samples"] >= 8
    assert result["growth_after_warmup_mib"] < 64, result


@pytest.mark.slow
def test_soak_30_minutes(tmp_path: Path) -> None:
    result = _run(tmp_path, "soak", "--minutes", "30", "--sample-s", "10", timeout=2000)
    assert result["growth_after_warmup_mib"] < 64, result
