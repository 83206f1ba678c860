"""``alphapulse verify`` on the captures of every exchange: the JSON summary, its exact keys,
its numbers against the truth files / SOURCES.md, and the exit status."""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from alphapulse.cli import main
from alphapulse.verify import SUMMARY_KEYS

KEYS = {"messages", "trades", "books", "snapshots", "updates", "checksum_ok", "checksum_failed",
        "gaps", "resyncs", "rejected", "top", "elapsed_s"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alphapulse.cli", *args], capture_output=True,
                          text=True, timeout=120)


def verify_json(capsys: pytest.CaptureFixture[str], exchange: str, path: Path) -> tuple[int, dict]:
    rc = main(["verify", "--exchange", exchange, str(path), "--json"])
    out = capsys.readouterr().out
    assert out.count("\n") == 1                        # exactly one JSON object
    summary = json.loads(out)
    assert set(summary) == KEYS == set(SUMMARY_KEYS)
    return rc, summary


def same(a: str | None, b: str) -> bool:
    return a is not None and Decimal(a) == Decimal(b)


# ---- Kraken -------------------------------------------------------------------------------

@pytest.mark.parametrize("rel, rc, expected", [
    ("generated/kraken-clean.jsonl", 0, dict(checksum_ok=5001, checksum_failed=0, trades=409,
                                             gaps=0, resyncs=0, snapshots=1, updates=5000)),
    ("generated/arb-kraken.jsonl", 0, dict(checksum_ok=5001, checksum_failed=0, trades=391)),
    ("generated/kraken-corrupt.jsonl", 1, dict(checksum_ok=5000, checksum_failed=1, gaps=1,
                                               resyncs=1, trades=409)),
    ("kraken/v2-book-btcusd-depth10-2023-07-30.jsonl", 0, dict(messages=510, checksum_ok=510,
                                                                checksum_failed=0)),
    ("kraken/v1-book-xbtusd-depth10-2023-08-30.jsonl", 0, dict(messages=1150, checksum_ok=979,
                                                                checksum_failed=0, updates=979)),
    ("kraken/v1-trade-10pairs-2021-04-17.jsonl", 0, dict(messages=49, trades=10, books=0)),
    ("kraken-doc/book-checksum-example.jsonl", 0, dict(checksum_ok=1, books=1)),
])
def test_kraken_captures(capsys: pytest.CaptureFixture[str], fixtures_dir: Path, rel: str,
                         rc: int, expected: dict) -> None:
    code, s = verify_json(capsys, "kraken", fixtures_dir / rel)
    assert code == rc
    assert {k: s[k] for k in expected} == expected
    assert s["rejected"] == {} and s["elapsed_s"] >= 0


@pytest.mark.parametrize("name", ["kraken-clean", "kraken-corrupt", "arb-kraken"])
def test_kraken_top_of_book_matches_truth(capsys: pytest.CaptureFixture[str],
                                          fixtures_dir: Path, name: str) -> None:
    t = json.loads((fixtures_dir / "generated" / f"{name}.truth.json").read_text())
    _, s = verify_json(capsys, "kraken", fixtures_dir / "generated" / f"{name}.jsonl")
    assert s["messages"] == t["messages"]
    assert s["top"] == {"BTC-USD": {"bid": t["final_best_bid"], "ask": t["final_best_ask"]}}


def test_real_process_exit_status_and_output(fixtures_dir: Path) -> None:
    ok = cli("verify", "--exchange", "kraken",
             str(fixtures_dir / "generated" / "kraken-clean.jsonl"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["checksum_ok"] == 5001
    bad = cli("verify", "--exchange", "kraken",
              str(fixtures_dir / "generated" / "kraken-corrupt.jsonl"))
    assert bad.returncode == 1
    assert "1 failed" in bad.stdout and "INCONSISTENT" in bad.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert cli("verify", "--exchange", "kraken", str(tmp_path / "missing.jsonl")).returncode == 2
    assert cli("verify", "--exchange", "nasdaq", str(tmp_path)).returncode == 2


def test_envelope_captures_verify_the_same(capsys: pytest.CaptureFixture[str],
                                          fixtures_dir: Path, tmp_path: Path) -> None:
    from alphapulse.capture import CaptureWriter, read_frames

    path = tmp_path / "env.jsonl"
    with CaptureWriter(path) as w:
        for i, frame in enumerate(read_frames(fixtures_dir / "generated" / "kraken-clean.jsonl")):
            w.write(frame, 1_800_000_000_000_000_000 + i)
    _, raw = verify_json(capsys, "kraken", fixtures_dir / "generated" / "kraken-clean.jsonl")
    _, env = verify_json(capsys, "kraken", path)
    raw.pop("elapsed_s"), env.pop("elapsed_s")
    assert raw == env


# ---- Coinbase and Binance.US (their parsers, same tool) -------------------------------------

@pytest.mark.parametrize("exchange, name, rc, gaps", [
    ("coinbase", "coinbase-clean", 0, 0), ("coinbase", "coinbase-gap", 1, 1),
    ("coinbase", "arb-coinbase", 0, 0),
    ("binanceus", "binanceus-clean", 0, 0), ("binanceus", "binanceus-gap", 1, 1),
])
def test_generated_captures_of_the_other_exchanges(capsys: pytest.CaptureFixture[str],
                                                   fixtures_dir: Path, exchange: str, name: str,
                                                   rc: int, gaps: int) -> None:
    pytest.importorskip(f"alphapulse.exchanges.{exchange}")
    t = json.loads((fixtures_dir / "generated" / f"{name}.truth.json").read_text())
    code, s = verify_json(capsys, exchange, fixtures_dir / "generated" / f"{name}.jsonl")
    assert code == rc
    assert (s["messages"], s["trades"], s["gaps"], s["checksum_failed"]) == (
        t["messages"], t["trades"], gaps, 0)
    assert s["resyncs"] == gaps and s["rejected"] == {}
    top = s["top"]["BTC-USD"]
    assert same(top["bid"], t["final_best_bid"]) and same(top["ask"], t["final_best_ask"])


def test_coinbase_real_captures(capsys: pytest.CaptureFixture[str], fixtures_dir: Path) -> None:
    pytest.importorskip("alphapulse.exchanges.coinbase")
    code, s = verify_json(capsys, "coinbase", fixtures_dir / "coinbase" /
                          "advanced-trade-btcusd-ethusd-2026-08-09.jsonl")
    assert code == 0 and s["messages"] == 1030 and s["gaps"] == 0 and s["books"] == 2
    assert s["top"]["BTC-USD"] == {"bid": "65083.66", "ask": "65083.67"}
    assert same(s["top"]["ETH-USD"]["bid"], "1919.28") and same(s["top"]["ETH-USD"]["ask"], "1919.38")
    code, s = verify_json(capsys, "coinbase", fixtures_dir / "coinbase" /
                          "exchange-feed-level2-ticker-matches-2021-04-17-a.jsonl")
    assert code == 0 and s["messages"] == 6732 and s["gaps"] == 0 and s["books"] == 6
    assert same(s["top"]["SKL-USD"]["bid"], "0.7902") and same(s["top"]["SKL-USD"]["ask"], "0.7911")
    assert same(s["top"]["DASH-BTC"]["bid"], "0.00619316")
    assert same(s["top"]["DASH-BTC"]["ask"], "0.00619947")


# From fixtures/SOURCES.md: best bid / ask after the last event; no gap anywhere.
BINANCE = {
    "2021-04-17-atomusdt": ("25.157", "25.201"), "2021-04-17-bchusdt": ("1052.39", "1054.13"),
    "2021-04-17-btcusdt": ("60484.72", "60494.05"), "2021-04-17-busdusd": ("0.9999", "1.0000"),
    "2021-04-17-ethbusd": ("2361.24", "2365.45"), "2021-04-17-omgusd": ("9.5423", "9.5559"),
    "2021-04-17-usdtusd": ("1.0010", "1.0011"), "2021-04-17-xlmusdt": ("0.60082", "0.60197"),
    "2021-04-17-zenusd": ("121.2730", "121.7210"), "2021-04-17-zrxusd": ("2.0827", "2.0882"),
    "2021-10-12-compusdt": ("296.92", "297.46"), "2021-10-12-crvusdt": ("2.643", "2.648"),
    "2021-10-12-omgbusd": ("13.7307", "13.7728"), "2021-10-12-zrxusdt": ("0.9947", "0.9978"),
}


@pytest.mark.parametrize("name", sorted(BINANCE))
def test_binanceus_real_captures(capsys: pytest.CaptureFixture[str], fixtures_dir: Path,
                                 name: str) -> None:
    pytest.importorskip("alphapulse.exchanges.binanceus")
    code, s = verify_json(capsys, "binanceus", fixtures_dir / "binanceus" / f"{name}.jsonl")
    assert code == 0 and s["gaps"] == 0 and s["snapshots"] == 1 and s["books"] == 1
    (top,) = s["top"].values()
    bid, ask = BINANCE[name]
    assert same(top["bid"], bid) and same(top["ask"], ask)
