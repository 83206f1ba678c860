"""Issue 7, scenarios 2-4: the ring under stress between real processes.

2. Records of random sizes, each carrying its own CRC32 and sequence number, written by one
   process through a ``ring.Fanout`` (the ring is SPSC: one ring per reader) and read by three
   reader processes at once: zero CRC failures, zero reorderings, zero losses (lossless policy).
3. ``kill -9`` of the writer while it writes flat out: no reader ever sees a partial record,
   every reader reports ``ProducerGone`` within 1 s, and a writer restarted on the same paths is
   seen as a restart (generation + 1) by the same reader processes, which carry on.
4. A lagging reader paused for 10x the ring capacity (drop policy) gets exactly one overrun with
   the exact missed count, then correct data; the other readers lose nothing.

Short forms run in CI; ``pytest -m slow tests/stress`` runs the 10^6-record form.
"""
from __future__ import annotations

import os
import signal
import struct
import time
import zlib

import numpy as np
import pytest

from alphapulse import ring
from alphapulse.errors import ProducerGone, RingOverrun

CAP = 1 << 16
_HDR = struct.Struct("<QI")          # sequence, crc32(payload)
_BLOB = np.random.default_rng(7).bytes(1 << 20)


def make_record(seq: int, rng: np.random.Generator, max_payload: int = 1000) -> bytes:
    """Sequence number + CRC32 of a random-size payload, then the payload."""
    n = int(rng.integers(0, max_payload))
    off = int(rng.integers(0, len(_BLOB) - n))
    payload = _BLOB[off: off + n]
    return _HDR.pack(seq, zlib.crc32(payload)) + payload


def check_record(rec: bytes) -> int:
    """The record's sequence number; AssertionError on a torn or corrupt record."""
    assert len(rec) >= _HDR.size, f"short record ({len(rec)} bytes)"
    seq, crc = _HDR.unpack_from(rec)
    assert zlib.crc32(memoryview(rec)[_HDR.size:]) == crc, f"CRC mismatch in record {seq}"
    return seq


# ---- workers (module level for spawn) --------------------------------------------------------

def _fan_writer(paths: list[str], count: int, policy: str, ready, go, result,
                capacity: int = CAP) -> None:
    fan = ring.Fanout(capacity, policy=policy)
    writers = [fan.add(p) for p in paths]
    ready.set()
    while not all(w.reader_attached for w in writers):
        time.sleep(0.001)
    go.wait(60)
    rng = np.random.default_rng(count)
    seq = 0
    while seq < count:
        recs = [make_record(s, rng) for s in range(seq, min(seq + 64, count))]
        for w in writers:
            done = w.write_many(recs)
            if policy == "lossless":
                while done < len(recs):
                    os.sched_yield()
                    done += w.write_many(recs[done:])
        seq += len(recs)
        if policy == "drop":
            time.sleep(0.002)     # a paced producer (~16 MB/s): healthy readers keep up
    result.put([w.dropped for w in writers])
    fan.close()


def _crc_reader(path: str, pause_at: int, resume, paused, result) -> None:
    """Read to the end; optionally stop at ``pause_at`` until ``resume`` is set."""
    r = ring.attach(path, timeout=30)
    expected = 0
    overruns: list[int] = []
    errors: list[str] = []
    while True:
        if pause_at and expected == pause_at and not resume.is_set():
            paused.set()
            resume.wait(60)
        try:
            rec = r.read_blocking(30)
        except RingOverrun as exc:
            overruns.append(exc.missed)
            expected += exc.missed
            continue
        except ProducerGone:
            if not r.writer_closed:              # a clean close also ends with ProducerGone
                errors.append("writer died")
            break
        if rec is None:
            if r.writer_closed:
                break
            errors.append("stalled")
            break
        try:
            seq = check_record(rec)
        except AssertionError as exc:
            errors.append(str(exc))
            break
        if seq != expected:
            errors.append(f"record {seq} where {expected} was due")
            break
        expected += 1
    r.close()
    result.put((path, expected, overruns, errors))


def _endless_writer(paths: list[str], ready) -> None:
    fan = ring.Fanout(CAP, policy="lossless")
    writers = [fan.add(p) for p in paths]
    ready.set()
    rng = np.random.default_rng(os.getpid())
    seq = 0
    while True:
        rec = make_record(seq, rng, 4000)        # large records: the kill lands mid-copy often
        for w in writers:
            while not w.write(rec):
                os.sched_yield()
        seq += 1


def _restart_reader(path: str, ready_for_kill, killed_at, result) -> None:
    """Read generation 1 until the writer dies, then wait for the restart and read on."""
    r = ring.attach(path, timeout=30)
    gen1 = r.generation
    got = 0
    errors: list[str] = []
    gone_after = None
    try:
        while True:
            rec = r.read_blocking(5)
            if rec is None:
                continue
            check_record(rec)
            got += 1
            if got == 2000:
                ready_for_kill.set()
    except ProducerGone:
        gone_after = time.time() - killed_at.value if killed_at.value else None
    except AssertionError as exc:
        errors.append(str(exc))
    r.close()
    # the restarted writer replaces the stale file: same path, generation + 1
    deadline = time.monotonic() + 30
    while True:
        r2 = ring.attach(path, timeout=30)
        if r2.generation > gen1 or time.monotonic() > deadline:
            break
        r2.close()
        time.sleep(0.01)
    after = 0
    expected = None
    try:
        while after < 2000:
            rec = r2.read_blocking(10)
            assert rec is not None, "restarted writer stalled"
            seq = check_record(rec)
            if expected is not None and seq != expected:
                errors.append(f"after restart: {seq} where {expected} was due")
                break
            expected = seq + 1
            after += 1
    except (AssertionError, ProducerGone) as exc:
        errors.append(repr(exc))
    result.put((gen1, r2.generation, got, gone_after, after, errors))
    r2.close()


def _start(spawn, target, *args):
    proc = spawn.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _stop(*procs) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.kill()
        proc.join(30)


# ---- scenario 2 ------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [
    150_000,
    pytest.param(1_000_000, marks=pytest.mark.slow, id="1M"),
])
def test_three_readers_crc_no_loss_no_reorder(shm_dir, spawn, count):
    paths = [str(shm_dir / f"crc{i}") for i in range(3)]
    ready, go, result = spawn.Event(), spawn.Event(), spawn.Queue()
    written = spawn.Queue()    # the writer's own queue: results of several processes race
    writer = _start(spawn, _fan_writer, paths, count, "lossless", ready, go, written)
    readers = []
    try:
        assert ready.wait(60)
        idle = spawn.Event()                     # kept referenced until the children have it
        readers = [_start(spawn, _crc_reader, p, 0, idle, idle, result) for p in paths]
        go.set()
        dropped = written.get(timeout=600)
        outcomes = [result.get(timeout=600) for _ in readers]
        assert dropped == [0, 0, 0]
        for path, got, overruns, errors in outcomes:
            assert errors == [], (path, errors)
            assert overruns == [] and got == count, (path, got, overruns)
    finally:
        _stop(writer, *readers)


# ---- scenario 3 ------------------------------------------------------------------------------

def test_kill9_mid_write_restart_seen_and_readers_recover(shm_dir, spawn):
    paths = [str(shm_dir / f"k{i}") for i in range(3)]
    ready = spawn.Event()
    killed_at = spawn.Value("d", 0.0)
    result = spawn.Queue()
    writer = _start(spawn, _endless_writer, paths, ready)
    readers = []
    restarted = None
    try:
        assert ready.wait(60)
        flags = [spawn.Event() for _ in paths]
        readers = [_start(spawn, _restart_reader, p, f, killed_at, result)
                   for p, f in zip(paths, flags)]
        for f in flags:
            assert f.wait(60)
        killed_at.value = time.time()
        os.kill(writer.pid, signal.SIGKILL)      # mid-write: it never waits for anything
        writer.join(10)
        time.sleep(0.2)
        ready2 = spawn.Event()
        restarted = _start(spawn, _endless_writer, paths, ready2)
        assert ready2.wait(60)
        outcomes = [result.get(timeout=120) for _ in readers]
        for gen1, gen2, got, gone_after, after, errors in outcomes:
            assert errors == []
            assert got >= 2000
            assert gone_after is not None and gone_after < 1.0, f"writer death seen after {gone_after}"
            assert gen2 == gen1 + 1                          # seen as a restart
            assert after == 2000                             # and reading resumed
    finally:
        _stop(writer, *readers, *([restarted] if restarted else []))


# ---- scenario 4 ------------------------------------------------------------------------------

def test_lagging_reader_one_exact_overrun_others_unaffected(shm_dir, spawn):
    paths = [str(shm_dir / f"lag{i}") for i in range(3)]
    # ~10x capacity while the lagging reader sleeps: records average ~512 bytes.  1 MiB rings:
    # at the paced ~16 MB/s a healthy reader may be descheduled for ~60 ms and lose nothing.
    cap = 1 << 20
    count = 20 * cap // 512 * 2 + 2000
    ready, go, result = spawn.Event(), spawn.Event(), spawn.Queue()
    resume, paused = spawn.Event(), spawn.Event()
    written = spawn.Queue()    # the writer's own queue: results of several processes race
    writer = _start(spawn, _fan_writer, paths, count, "drop", ready, go, written, cap)
    readers = []
    try:
        assert ready.wait(60)
        readers = [_start(spawn, _crc_reader, p, 1000 if i == 0 else 0, resume, paused, result)
                   for i, p in enumerate(paths)]
        go.set()
        assert paused.wait(60)
        dropped = written.get(timeout=120)         # the writer finished while one reader slept
        resume.set()
        outcomes = sorted([result.get(timeout=120) for _ in readers])
        lag, *others = outcomes
        assert lag[0] == paths[0]
        assert dropped[0] > 0 and dropped[1:] == [0, 0], dropped
        assert lag[3] == [] and lag[2] == [dropped[0]] and lag[1] == count, lag
        for path, got, overruns, errors in others:
            assert errors == [] and overruns == [] and got == count, (path, got, overruns, errors)
    finally:
        _stop(writer, *readers)
