"""Capture files: raw and envelope JSON Lines, exact bytes, writer, recorder."""
from __future__ import annotations

import gzip
import time
from pathlib import Path

import orjson
import pytest

from alphapulse.capture import (
    CaptureRecord,
    CaptureWriter,
    Recorder,
    envelope,
    parse_line,
    read_capture,
    read_frames,
)

FRAMES = [
    b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":96511.8,"qty":0.41117680}]}]}',
    b'[336,{"b":[["27119.90000","13.54109952","1693415330.621700"]],"c":"3572756970"},"book-10","XBT/USD"]',
    '{"msg":"caf\u00e9 \\"quoted\\" \\u00e9","n":-0.000}'.encode(),
    b'{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[]}',
]


def test_fixture_files_read_back_line_for_line(fixtures_dir: Path) -> None:
    path = fixtures_dir / "kraken" / "v2-book-btcusd-depth10-2023-07-30.jsonl"
    lines = [line for line in path.read_bytes().split(b"\n") if line]
    records = list(read_capture(path))
    assert [r.frame for r in records] == lines
    assert all(r.ts_recv is None and r.source is None for r in records)


@pytest.mark.parametrize("frame", FRAMES)
def test_envelope_keeps_the_frame_byte_for_byte(frame: bytes) -> None:
    line = envelope(frame, 1_700_000_000_123_456_789, "ws")
    assert b"\n" not in line
    orjson.loads(line)                                   # still one valid JSON object
    assert parse_line(line) == CaptureRecord(frame, 1_700_000_000_123_456_789, "ws")


def test_multiline_frames_survive_in_the_text_form() -> None:
    frame = b'{\n  "lastUpdateId": 1,\n  "bids": []\n}'
    line = envelope(frame, 5, "rest")
    assert b"\n" not in line and b'"text":' in line
    assert parse_line(line) == CaptureRecord(frame, 5, "rest")


def test_a_raw_frame_that_looks_like_json_is_not_mistaken_for_an_envelope() -> None:
    raw = b'{"ts_recv":"soon","src":"ws","frame":1}'
    assert parse_line(raw) == CaptureRecord(raw)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_writer_and_reader_round_trip_mixed_forms(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cap{suffix}"
    with CaptureWriter(path) as w:
        for i, f in enumerate(FRAMES):
            w.write(f, 1000 + i, "rest" if f.startswith(b'{"lastUpdateId"') else "ws")
    with CaptureWriter(path, raw=True) as w:             # appending raw lines to the same file
        w.write(FRAMES[0])
        w.write(b"\n")                                   # blank: skipped on read
    if suffix.endswith(".gz"):
        assert gzip.open(path).read().count(b"\n") == len(FRAMES) + 2
    recs = list(read_capture(path))
    assert [r.frame for r in recs] == FRAMES + [FRAMES[0]]
    assert [r.ts_recv for r in recs] == [1000, 1001, 1002, 1003, None]
    assert [r.source for r in recs] == ["ws", "ws", "ws", "rest", None]
    assert read_frames([path, path])[: len(FRAMES)] == FRAMES


def test_raw_writer_makes_multiline_frames_one_line(tmp_path: Path) -> None:
    path = tmp_path / "raw.jsonl"
    with CaptureWriter(path, raw=True) as w:
        w.write(b'{\n "a": 1\n}')
    assert read_frames(path) == [b'{  "a": 1 }']


def test_envelope_rejects_unknown_sources() -> None:
    with pytest.raises(ValueError, match="source"):
        envelope(b"{}", 1, "udp")


def test_recorder_names_flushes_and_rotates(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "rec", "kraken", flush_every=2)
    t0 = time.time_ns()
    rec.write(FRAMES[0], t0)
    rec.write(FRAMES[1], t0 + 1)
    # flushed after 2 records even though the file is still open
    assert list(read_capture(rec.files[0]))[1] == CaptureRecord(FRAMES[1], t0 + 1, "ws")
    rec.rotate_s = 0.0                                   # next write starts a new file
    rec.write(FRAMES[3], t0 + 2, source="rest")
    rec.close()
    assert len(rec.files) == 2 and all(p.name.startswith("kraken-") for p in rec.files)
    frames = [r.frame for p in rec.files for r in read_capture(p)]
    assert frames == [FRAMES[0], FRAMES[1], FRAMES[3]]
    assert list(read_capture(rec.files[1]))[0].source == "rest"
