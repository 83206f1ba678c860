"""Per-call costs of the ring through its Python API (pytest-benchmark, one process).

    .venv/bin/python -m pytest benchmarks/bench_ring.py --benchmark-only -q

Writer and reader live in the same process here, so these are the costs of the calls
themselves (framing, copy, atomics, object creation), without cross-core traffic; the
cross-process numbers are in benchmarks/ipc_compare.py.  Each round moves BATCH records so the
ring never fills and never runs dry inside a timed call.
"""
from __future__ import annotations

import pytest

from alphapulse import ring

BATCH = 1000


@pytest.fixture(params=[64, 256], ids=["64B", "256B"])
def size(request) -> int:
    return request.param


@pytest.fixture
def pair(tmp_path):
    w = ring.create(tmp_path / "bench", 1 << 22)
    r = ring.attach(tmp_path / "bench")
    yield w, r
    r.close()
    w.close()


def test_write_then_read(benchmark, pair, size):
    w, r = pair
    msg = b"m" * size
    write, read = w.write, r.read

    def run() -> None:
        for _ in range(BATCH):
            write(msg)
        for _ in range(BATCH):
            read()

    benchmark.extra_info["records_per_round"] = BATCH
    benchmark(run)


def test_write_many_read_many(benchmark, pair, size):
    w, r = pair
    recs = [b"m" * size] * BATCH

    def run() -> None:
        assert w.write_many(recs) == BATCH
        assert len(r.read_many(BATCH)) == BATCH

    benchmark.extra_info["records_per_round"] = BATCH
    benchmark(run)


def test_read_view_advance(benchmark, pair, size):
    w, r = pair
    recs = [b"m" * size] * BATCH
    read_view, advance = r.read_view, r.advance

    def run() -> None:
        w.write_many(recs)
        for _ in range(BATCH):
            read_view()
            advance()

    benchmark.extra_info["records_per_round"] = BATCH
    benchmark(run)


def test_read_into(benchmark, pair, size):
    w, r = pair
    recs = [b"m" * size] * BATCH
    buf = bytearray(size)
    read_into = r.read_into

    def run() -> None:
        w.write_many(recs)
        for _ in range(BATCH):
            read_into(buf)

    benchmark.extra_info["records_per_round"] = BATCH
    benchmark(run)


def test_read_empty(benchmark, pair):
    _, r = pair
    read = r.read

    def run() -> None:
        for _ in range(BATCH):
            read()

    benchmark.extra_info["records_per_round"] = BATCH
    benchmark(run)
