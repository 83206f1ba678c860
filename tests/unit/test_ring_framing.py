"""The ring's framing against the pure-Python model (tests/ring_reference.py), in one process.

Every test compares payloads AND positions (the writer's backlog is head - tail), so a frame
placed one word off, a missed PAD or a wrong wrap shows up even when the bytes happen to match.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ring_reference import RingModel, frame_size

from alphapulse import ring
from alphapulse.errors import ProducerGone, RingOverrun

CAP = 4096


@pytest.fixture
def pair(shm_dir):
    made = []

    def make(capacity: int = CAP, policy: str = "lossless", name: str = "r"):
        w = ring.create(shm_dir / name, capacity, policy=policy)
        r = ring.attach(shm_dir / name)
        made.append((w, r))
        return w, r

    yield make
    for w, r in made:
        r.close()
        w.close()


def _payload(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def test_roundtrip_and_empty(pair):
    w, r = pair()
    assert r.read() is None
    assert w.write(b"a") is True
    assert w.write(bytearray(b"bc")) is True
    assert w.write(memoryview(b"xdefx")[1:4]) is True
    assert [r.read(), r.read(), r.read(), r.read()] == [b"a", b"bc", b"def", None]
    assert w.backlog == 0


def _move_head(w, r, model: RingModel, target: int) -> None:
    """Write and consume filler records until the head sits at region offset ``target``."""
    for _ in range(64):
        off = model.head % CAP
        if off == target:
            return
        d = target - off if target > off else CAP - off
        if d == 8:
            f = 16                      # too small for a frame: pads to the region start
        else:
            f = min(d, 1024)
            if d - f == 8:
                f -= 16
        filler = b"f" * (f - 8)
        assert w.write(filler) is model.write(filler) is True
        assert r.read() == model.read() == filler
    raise AssertionError("could not reach the target offset")


def test_wrap_at_every_alignment(pair):
    """Put the head at every 8-byte position near the end of the region and write records of
    every length across it: each lands byte-exact where the model says."""
    rng = random.Random(7)
    for gap in range(8, 129, 8):             # free bytes left before the end of the region
        w, r = pair(name=f"w{gap}")
        model = RingModel(CAP)
        for length in range(1, 80):
            _move_head(w, r, model, CAP - gap)
            recs = [_payload(rng, length) for _ in range(3)]
            for rec in recs:
                assert w.write(rec) is model.write(rec) is True
                assert w.backlog == model.backlog
            for rec in recs:
                assert r.read() == model.read() == rec
            assert w.backlog == model.backlog == 0


def test_max_size_records(pair):
    w, r = pair()
    big = bytes(range(256)) * (w.max_record // 256) + b"z" * (w.max_record % 256)
    assert len(big) == w.max_record == CAP // 2 - 32
    for shift in range(0, 64, 8):
        if shift:
            assert w.write(b"s" * (shift - 7 if shift > 8 else 1))
            r.read()
        assert w.write(big)
        assert r.read() == big
    with pytest.raises(ValueError, match="exceeds max_record"):
        w.write(big + b"!")
    with pytest.raises(ValueError, match="at least 1 byte"):
        w.write(b"")


def test_full_ring_lossless_changes_nothing(pair):
    w, r = pair()
    n = 0
    while w.write(b"x" * 100):
        n += 1
    assert n == CAP // frame_size(100)
    before = w.backlog
    assert w.write(b"y" * 100) is False and w.write_many([b"y" * 100, b"z"]) == 0
    assert w.backlog == before and w.dropped == 0
    assert len(r.read_many(10_000)) == n
    assert r.read() is None


def test_drop_policy_reports_exact_missed_once(pair):
    w, r = pair(policy="drop")
    n = 0
    while w.write(n.to_bytes(8, "little") * 8):
        n += 1
    for extra in range(25):
        assert w.write(b"l" * 64) is False
    assert w.dropped == 26 and r.dropped == 26     # the write that ended the fill loop, too
    got = r.read_many(10_000)                 # stops before the notice
    assert len(got) == n
    assert w.write(b"after")
    with pytest.raises(RingOverrun) as exc:
        r.read()
    assert exc.value.missed == 26
    assert r.read() == b"after"
    assert r.read() is None


def test_notice_at_close_when_no_record_follows(pair):
    w, r = pair(policy="drop")
    while w.write(b"q" * 200):
        pass
    assert w.write(b"q" * 200) is False
    r.read_many(10_000)
    w.close()
    with pytest.raises(RingOverrun) as exc:
        r.read()
    assert exc.value.missed == 2          # the loop-ending write and this one
    with pytest.raises(ProducerGone):
        r.read()


def test_write_many_is_a_prefix_and_publishes_once(pair):
    w, r = pair()
    model = RingModel(CAP)
    recs = [bytes([i]) * (i + 1) for i in range(40)]
    assert w.write_many(recs) == model.write_many(recs) == 40
    assert r.read_many(1000) == model.read_many(1000) == recs
    big = [b"b" * 500] * 20
    written = w.write_many(big)
    assert 0 < written < 20 and written == model.write_many(big)
    assert w.backlog == model.backlog
    with pytest.raises(TypeError):
        w.write_many(42)


def test_read_view_and_advance(pair):
    w, r = pair()
    w.write(b"hello")
    w.write(b"world")
    v = r.read_view()
    assert v.readonly and bytes(v) == b"hello"
    assert bytes(r.read_view()) == b"hello"        # same record until advance
    with pytest.raises(BufferError):
        r.close()
    v2 = r.read_view()
    del v, v2
    r.advance()
    buf = bytearray(16)
    assert r.read_into(buf) == 5 and buf[:5] == b"world"
    assert r.read_into(buf) == 0
    w.write(b"x" * 40)
    with pytest.raises(ValueError, match="does not fit"):
        r.read_into(bytearray(8))
    assert r.read() == b"x" * 40


def test_read_many_into_packs_records(pair):
    np = pytest.importorskip("numpy")
    w, r = pair()
    recs = [bytes([65 + i]) * (i + 1) for i in range(6)]
    assert w.write_many(recs) == 6
    buf, lengths = bytearray(10), np.zeros(4, dtype=np.int64)
    assert r.read_many_into(buf, lengths) == 4          # 1+2+3+4 bytes fill the buffer
    assert bytes(buf) == b"".join(recs[:4]) and list(lengths) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="does not fit"):
        r.read_many_into(bytearray(3), lengths)          # 5-byte record, nothing copied
    assert r.read_many_into(bytearray(64), lengths) == 2 and list(lengths[:2]) == [5, 6]
    assert r.read_many_into(buf, lengths) == 0
    with pytest.raises(ValueError):
        r.read_many_into(buf, np.zeros(4, dtype=np.int32))


def test_closed_handles_raise(pair):
    w, r = pair()
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(b"x")
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.read()


# ---- property tests against the model ----------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, CAP // 2 - 32)),
        st.tuples(st.just("write"), st.integers(1, 64)),
        st.tuples(st.just("write_many"), st.lists(st.integers(1, 300), min_size=1, max_size=20)),
        st.tuples(st.just("read"), st.just(0)),
        st.tuples(st.just("read_many"), st.integers(1, 30)),
    ),
    min_size=1, max_size=120,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops, policy=st.sampled_from(["lossless", "drop"]), seed=st.integers(0, 2**32))
def test_framing_matches_model(shm_dir, script, policy, seed):
    rng = random.Random(seed)
    name = f"h{rng.getrandbits(48):x}"
    w = ring.create(shm_dir / name, CAP, policy=policy)
    r = ring.attach(shm_dir / name)
    model = RingModel(CAP, policy)
    try:
        for op, arg in script:
            if op == "write":
                data = rng.randbytes(arg)
                assert w.write(data) is model.write(data)
            elif op == "write_many":
                recs = [rng.randbytes(n) for n in arg]
                assert w.write_many(recs) == model.write_many(recs)
            else:
                expected: object
                try:
                    expected = model.read() if op == "read" else model.read_many(arg)
                except RingOverrun as exc:
                    with pytest.raises(RingOverrun) as got:
                        r.read() if op == "read" else r.read_many(arg)
                    assert got.value.missed == exc.missed
                else:
                    assert (r.read() if op == "read" else r.read_many(arg)) == expected
            assert w.backlog == model.backlog
            assert w.dropped == model.dropped
    finally:
        r.close()
        w.close()
        w.unlink()
