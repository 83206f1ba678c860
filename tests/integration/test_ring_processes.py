"""The ring between real processes (multiprocessing spawn): a long random stream arrives
byte-exact, overruns are reported with exact counts, a SIGKILLed producer is reported gone,
blocking and async readers wake up, and one writer can feed several readers' rings."""
from __future__ import annotations

import asyncio
import os
import signal
import struct
import threading
import time

import numpy as np
import pytest

from alphapulse import ring
from alphapulse.errors import ProducerGone, RingOverrun

CAP = 1 << 16
BLOB_SIZE = 1 << 20
STREAM_RECORDS = int(os.environ.get("ALPHAPULSE_RING_RECORDS", 1_000_000))


# ---- record generators shared by both sides (each side rebuilds them from the seed) --------

def _stream_plan(seed: int, count: int, max_record: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blob = rng.bytes(BLOB_SIZE)
    lengths = rng.integers(1, 257, count)
    big = rng.random(count) < 0.002                         # a few very large records
    lengths[big] = rng.integers(257, max_record + 1, int(big.sum()))
    offsets = (rng.random(count) * (BLOB_SIZE - lengths)).astype(np.int64)
    return blob, offsets, lengths


_FILL = bytes(range(256)) * 16


def _seq_record(seq: int) -> bytes:
    """Record ``seq``: its number, then a seq-dependent slice, 8..263 bytes in all."""
    n = (seq * 2654435761) % 256
    return struct.pack("<Q", seq) + _FILL[seq % 251: seq % 251 + n]


def _check_seq_record(rec: bytes | memoryview, expected: int) -> None:
    seq = struct.unpack_from("<Q", rec)[0]
    assert seq == expected, f"record {seq} where {expected} was due"
    assert bytes(rec) == _seq_record(seq), f"record {seq} corrupt"


# ---- workers (module level so spawn can import them) --------------------------------------

def _stream_writer(path: str, seed: int, count: int, ready) -> None:
    w = ring.create(path, CAP)
    ready.set()
    blob, offsets, lengths = _stream_plan(seed, count, w.max_record)
    batch_rng = np.random.default_rng(seed + 1)
    mv = memoryview(blob)
    i = 0
    while i < count:
        k = int(batch_rng.integers(1, 64))
        if k < 32:                                          # single calls, mixed input types
            for j in range(i, min(i + k, count)):
                rec = mv[offsets[j]: offsets[j] + lengths[j]]
                data = rec if j % 3 == 0 else bytes(rec)
                while not w.write(data):
                    os.sched_yield()
            i = min(i + k, count)
        else:                                               # a batch, resubmitting the rest
            recs = [bytes(mv[offsets[j]: offsets[j] + lengths[j]]) for j in range(i, min(i + k, count))]
            while recs:
                n = w.write_many(recs)
                recs = recs[n:]
                i += n
                if recs:
                    os.sched_yield()
    w.close()


def _drop_writer(path: str, ready, phase1_done, drained, result) -> None:
    w = ring.create(path, CAP, policy="drop")
    ready.set()
    while not w.reader_attached:
        time.sleep(0.001)
    seq = 0
    written_bytes = 0
    while written_bytes < 10 * CAP:                         # the reader is not reading
        rec = _seq_record(seq)
        w.write(rec)
        written_bytes += len(rec) + 8
        seq += 1
    phase1_done.set()
    drained.wait(60)
    for _ in range(5000):                                   # resumes: notice, then records
        w.write(_seq_record(seq))
        seq += 1
    result.put((seq, w.dropped))
    w.close()


def _endless_writer(path: str, ready, stop_after: int) -> None:
    w = ring.create(path, CAP)
    ready.set()
    seq = 0
    while True:
        if stop_after and seq == stop_after:
            time.sleep(120)                                 # alive but silent: killed while idle
        while not w.write(_seq_record(seq)):
            os.sched_yield()
        seq += 1


def _paced_writer(path: str, ready, bursts: int, per_burst: int, pause: float) -> None:
    w = ring.create(path, CAP)
    ready.set()
    while not w.reader_attached:
        time.sleep(0.001)
    seq = 0
    for _ in range(bursts):
        for _ in range(per_burst):
            while not w.write(_seq_record(seq)):
                time.sleep(0.0005)
            seq += 1
        time.sleep(pause)
    w.close()


def _fanout_writer(paths: list[str], ready, count: int) -> None:
    fan = ring.Fanout(CAP, policy="lossless")
    writers = [fan.add(p) for p in paths]
    ready.set()
    while not all(w.reader_attached for w in writers):
        time.sleep(0.001)
    seq = 0
    while seq < count:
        recs = [_seq_record(s) for s in range(seq, min(seq + 50, count))]
        for w in writers:                       # lossless here: resubmit what did not fit
            done = w.write_many(recs)
            while done < len(recs):
                os.sched_yield()
                done += w.write_many(recs[done:])
        seq += len(recs)
    fan.close()


def _fanout_reader(path: str, count: int, result) -> None:
    r = ring.attach(path, timeout=30)
    got = 0
    for rec in r:
        _check_seq_record(rec, got)
        got += 1
    r.close()
    result.put((path, got))


def _reader_then_hang(path: str, consume: int, done) -> None:
    r = ring.attach(path, timeout=30)
    for i in range(consume):
        _check_seq_record(r.read_blocking(30), i)
    done.set()
    time.sleep(120)


def _start(spawn, target, *args):
    proc = spawn.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _stop(proc) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(30)


# ---- tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("records", [
    STREAM_RECORDS,
    pytest.param(10_000_000, marks=pytest.mark.slow, id="10M"),
])
def test_random_stream_arrives_byte_exact_in_order(shm_dir, spawn, records, request):
    if records > STREAM_RECORDS and "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long form: run with -m slow")
    path = str(shm_dir / "stream")
    seed = 20240611 + records
    ready = spawn.Event()
    proc = _start(spawn, _stream_writer, path, seed, records, ready)
    try:
        assert ready.wait(60)
        r = ring.attach(path, timeout=30)
        blob, offsets, lengths = _stream_plan(seed, records, r.max_record)
        buf = bytearray(r.max_record)
        lens = np.zeros(64, dtype=np.int64)
        i = 0
        mode = 0
        while True:
            mode = (mode + 1) % 5
            try:
                if mode == 0:
                    got = r.read_many(97)
                    if not got:
                        r.wait(5)
                        continue
                elif mode == 1:
                    rec = r.read_blocking(5)
                    got = [] if rec is None else [rec]
                elif mode == 2:
                    view = r.read_view()
                    if view is None:
                        continue
                    got = [bytes(view)]
                    view.release()
                    r.advance()
                elif mode == 3:
                    n = r.read_into(buf)
                    got = [bytes(buf[:n])] if n else []
                else:
                    k = r.read_many_into(buf, lens)
                    ends = np.cumsum(lens[:k])
                    got = [bytes(buf[e - n: e]) for e, n in zip(ends, lens[:k])]
            except ProducerGone:
                break
            for rec in got:
                assert i < records, "more records than were written"
                o, n = offsets[i], lengths[i]
                assert rec == blob[o: o + n], f"record {i} ({n} bytes) differs"
                i += 1
        assert i == records
        assert r.writer_closed
        r.close()
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        _stop(proc)


def test_overrun_reports_exact_missed_count(shm_dir, spawn):
    path = str(shm_dir / "drop")
    ready, phase1_done, drained = spawn.Event(), spawn.Event(), spawn.Event()
    result = spawn.Queue()
    proc = _start(spawn, _drop_writer, path, ready, phase1_done, drained, result)
    try:
        assert ready.wait(60)
        r = ring.attach(path, timeout=30)
        assert phase1_done.wait(60)
        expected = 0
        missed_total = 0
        overruns = 0
        while True:
            got = r.read_many(256)
            for rec in got:
                _check_seq_record(rec, expected)
                expected += 1
            if not got:
                break
        drained.set()
        while True:
            try:
                rec = r.read_blocking(30)
            except RingOverrun as exc:
                assert exc.missed > 0
                overruns += 1
                missed_total += exc.missed
                expected += exc.missed
                continue
            except ProducerGone:
                break
            assert rec is not None, "writer stalled"
            _check_seq_record(rec, expected)
            expected += 1
        total, dropped = result.get(timeout=30)
        assert overruns >= 1 and missed_total == dropped > 0
        assert expected == total
        r.close()
    finally:
        _stop(proc)


@pytest.mark.parametrize("idle", [False, True], ids=["mid-stream", "while-waiting"])
def test_sigkill_of_producer_is_reported(shm_dir, spawn, idle):
    path = str(shm_dir / "kill")
    ready = spawn.Event()
    proc = _start(spawn, _endless_writer, path, ready, 20_000 if idle else 0)
    try:
        assert ready.wait(60)
        r = ring.attach(path, timeout=30)
        expected = 0
        killed_at = None
        try:
            for rec in r:
                _check_seq_record(rec, expected)
                expected += 1
                if expected == 10_000 and killed_at is None:
                    if idle:
                        threading.Timer(0.3, os.kill, (proc.pid, signal.SIGKILL)).start()
                        killed_at = time.monotonic() + 0.3
                    else:
                        os.kill(proc.pid, signal.SIGKILL)       # mid-stream, unreaped (zombie)
                        killed_at = time.monotonic()
            raise AssertionError("iteration ended as if the writer had closed cleanly")
        except ProducerGone:
            pass
        noticed = time.monotonic() - killed_at
        assert noticed < 5.0, f"producer death noticed after {noticed:.2f} s"
        assert expected >= 10_000 and not r.writer_alive and not r.writer_closed
        with pytest.raises(ProducerGone):
            r.read()
        r.close()
    finally:
        _stop(proc)


def test_async_iteration_does_not_block_the_loop(shm_dir, spawn):
    path = str(shm_dir / "async")
    ready = spawn.Event()
    bursts, per_burst = 6, 500
    proc = _start(spawn, _paced_writer, path, ready, bursts, per_burst, 0.15)

    async def main() -> tuple[int, int]:
        r = ring.attach(path, timeout=30)
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        n = 0
        async for rec in r:
            _check_seq_record(rec, n)
            n += 1
        stop.set()
        await task
        r.close()
        return n, ticks

    try:
        assert ready.wait(60)
        n, ticks = asyncio.run(main())
        assert n == bursts * per_burst
        # ~0.9 s of pauses; a loop blocked in a wait would not tick during them.
        assert ticks >= 20
    finally:
        _stop(proc)


def test_blocking_wait_wakes_and_times_out(shm_dir):
    with ring.create(shm_dir / "w", CAP) as w, ring.attach(shm_dir / "w", spin_us=0) as r:
        assert r.wait(0.05) is False
        threading.Timer(0.2, w.write, (b"late",)).start()
        t0 = time.monotonic()
        assert r.read_blocking(10) == b"late"
        assert 0.15 < time.monotonic() - t0 < 5
        threading.Timer(0.2, w.close).start()
        with pytest.raises(ProducerGone):
            r.read_blocking(10)
        assert r.writer_closed


def test_close_wakes_a_waiting_thread(shm_dir):
    with ring.create(shm_dir / "cw", CAP) as w:
        r = ring.attach(shm_dir / "cw", spin_us=0)
        results = []
        t = threading.Thread(target=lambda: results.append(r.wait(None)))
        t.start()
        time.sleep(0.2)
        r.close()                        # must not unmap under the waiter
        t.join(5)
        assert not t.is_alive() and results == [False]
        w.write(b"x")


def test_one_writer_feeds_several_readers(shm_dir, spawn):
    paths = [str(shm_dir / f"fan{i}") for i in range(3)]
    ready = spawn.Event()
    result = spawn.Queue()
    count = 50_000
    writer = _start(spawn, _fanout_writer, paths, ready, count)
    readers = []
    try:
        assert ready.wait(60)
        readers = [_start(spawn, _fanout_reader, p, count, result) for p in paths]
        got = dict(result.get(timeout=120) for _ in paths)
        assert got == {p: count for p in paths}
    finally:
        for p in readers + [writer]:
            _stop(p)


def test_dead_reader_is_seen_and_replaced(shm_dir, spawn):
    path = str(shm_dir / "takeover")
    with ring.create(path, CAP) as w:
        for seq in range(100):
            assert w.write(_seq_record(seq))
        done = spawn.Event()
        proc = _start(spawn, _reader_then_hang, path, 40, done)
        try:
            assert done.wait(60)
            assert w.reader_attached and w.reader_pid == proc.pid
            os.kill(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while w.reader_attached and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not w.reader_attached
            with ring.attach(path) as r:              # takes the dead reader's slot
                assert w.reader_pid == os.getpid()
                for seq in range(40, 100):
                    _check_seq_record(r.read(), seq)
                assert r.read() is None
        finally:
            _stop(proc)


def test_async_cancel_then_close_and_overrun(shm_dir):
    async def main() -> None:
        with ring.create(shm_dir / "ac", CAP, policy="drop") as w:
            r = ring.attach(shm_dir / "ac")

            async def consume() -> None:
                async for _ in r:
                    pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.3)                 # long enough to park the helper thread
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            r.close()                                # waits for the helper thread's slice
            assert r.closed

            r = ring.attach(shm_dir / "ac")
            seq = 0
            while w.write(_seq_record(seq)):
                seq += 1
            w.write(_seq_record(seq + 1))            # dropped (and counted) too
            got = []
            with pytest.raises(RingOverrun) as exc:
                async for rec in r:
                    got.append(rec)
                    if len(got) == seq:
                        w.write(_seq_record(seq + 2))
            assert exc.value.missed == 2 and len(got) == seq
            async for rec in r:                      # iterate again after handling it
                _check_seq_record(rec, seq + 2)
                w.close()
            r.close()

    asyncio.run(main())


def test_fanout_prunes_gone_readers(shm_dir):
    with ring.Fanout(CAP) as fan:
        a, b, c = (fan.add(shm_dir / n) for n in "abc")
        ra = ring.attach(shm_dir / "a")
        rb = ring.attach(shm_dir / "b")
        assert [w.reader_state for w in (a, b, c)] == ["attached", "attached", "waiting"]
        assert fan.write(b"tick") == 3
        rb.close()
        assert b.reader_state == "gone"
        assert fan.prune(grace=60) == [b.path]
        assert not os.path.exists(b.path) and len(fan) == 2
        assert fan.prune(grace=0) == [c.path]
        assert ra.read() == b"tick" and fan.paths == [a.path]
        ra.close()


def test_sleeping_reader_is_woken_by_the_writer(shm_dir):
    """After 175 ms asleep (past the short first slice) a write wakes the reader through the
    futex, not at the end of its 50 ms slice (which would come ~27 ms later): the median delay
    over several tries is well below that.  (A generous bound: it checks that the wake-up
    exists, not how fast it is.)"""
    delays = []
    with ring.create(shm_dir / "wake", CAP) as w, ring.attach(shm_dir / "wake", spin_us=0) as r:
        for i in range(7):
            stamp = []

            def late_write() -> None:
                stamp.append(time.perf_counter())
                w.write(b"wake up")

            timer = threading.Timer(0.175, late_write)
            timer.start()
            assert r.wait(5)
            woke = time.perf_counter()
            timer.join()
            delays.append(woke - stamp[0])
            assert r.read() == b"wake up"
    delays.sort()
    assert delays[len(delays) // 2] < 0.015, delays
