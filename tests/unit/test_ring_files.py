"""Ring files: creation, permissions, stale files, and bad files (each opened in a subprocess, so a
crash fails the test instead of killing the run)."""
from __future__ import annotations

import errno
import os
import signal
import stat
import struct
import subprocess
import sys
import time

import pytest

from alphapulse import ring
from alphapulse.errors import ProducerGone, RingError, RingFormatError, RingPermissionError

CAP = 4096


def _fnv(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _reseal(buf: bytearray) -> None:
    """Recompute the identity checksum so only the field under test is wrong."""
    struct.pack_into("<Q", buf, 56, _fnv(bytes(buf[:56])))


# ---- creation and permissions ------------------------------------------------------------

def test_create_mode_group_and_bare_names(shm_dir, monkeypatch):
    with ring.create(shm_dir / "a", CAP) as w:
        st = os.stat(w.path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == ring.HEADER_BYTES + CAP
        assert w.capacity == CAP and w.max_record == CAP // 2 - 32 and w.generation == 1
    old = os.umask(0o077)
    try:
        with ring.create(shm_dir / "b", CAP, mode=0o660, group=os.getgid()) as w:
            st = os.stat(w.path)
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getgid()
    finally:
        os.umask(old)
    monkeypatch.setattr(ring, "DEFAULT_DIR", shm_dir)
    assert ring.resolve("feed") == shm_dir / "feed"
    with ring.create("feed", CAP) as w, ring.attach("feed") as r:
        assert w.path == r.path == str(shm_dir / "feed")
    assert not [p for p in os.listdir(shm_dir) if p.endswith(".tmp")]


@pytest.mark.parametrize("capacity", [0, 1000, 2048, 3 << 12, 1 << 32])
def test_bad_capacity(shm_dir, capacity):
    with pytest.raises(ValueError, match="capacity"):
        ring.create(shm_dir / "x", capacity)
    assert not os.path.exists(shm_dir / "x")


def test_bad_policy(shm_dir):
    with pytest.raises(ValueError, match="policy"):
        ring.create(shm_dir / "x", CAP, policy="sometimes")


def test_attach_missing_and_timeout(shm_dir):
    with pytest.raises(FileNotFoundError):
        ring.attach(shm_dir / "nope")
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        ring.attach(shm_dir / "nope", timeout=0.1)
    assert time.monotonic() - t0 >= 0.1


def test_attach_without_permission(shm_dir):
    w = ring.create(shm_dir / "private", CAP)
    try:
        if os.geteuid() != 0:
            os.chmod(w.path, 0)
            with pytest.raises(RingPermissionError):
                ring.attach(w.path)
            return
        # root bypasses file modes: try as "nobody" in a forked child.
        os.chmod(shm_dir, 0o711)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                ring.attach(w.path)
            except RingPermissionError:
                code = 0
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        w.close()


def test_one_reader_per_ring(shm_dir):
    with ring.create(shm_dir / "r", CAP) as w:
        r = ring.attach(shm_dir / "r")
        assert w.reader_attached and w.reader_pid == os.getpid()
        with pytest.raises(RingError, match="already has a reader"):
            ring.attach(shm_dir / "r")
        r.close()
        assert not w.reader_attached and w.reader_pid == 0
        with ring.attach(shm_dir / "r") as r2:
            assert r2.writer_pid == os.getpid() and r2.writer_alive


# ---- stale files -------------------------------------------------------------------------

def _create_and_hang(path: str, ready) -> None:
    w = ring.create(path, CAP)
    w.write(b"from the first writer")
    ready.set()
    time.sleep(60)


def test_stale_ring_of_killed_writer_is_replaced(shm_dir, spawn):
    path = str(shm_dir / "stale")
    ready = spawn.Event()
    child = spawn.Process(target=_create_and_hang, args=(path, ready))
    child.start()
    try:
        assert ready.wait(30)
        old_reader = ring.attach(path)
        with pytest.raises(RingError) as exc:
            ring.create(path, CAP)               # live writer: refused
        assert exc.value.errno == errno.EEXIST
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while ring.inspect(path)["writer_alive"] and time.monotonic() < deadline:
            time.sleep(0.01)
        with ring.create(path, CAP) as w:        # dead writer (zombie until joined): replaced
            assert w.generation == 2
            w.write(b"from the second writer")
            assert old_reader.read() == b"from the first writer"
            with pytest.raises(ProducerGone):
                old_reader.read()
            old_reader.close()
            with ring.attach(path) as r:
                assert r.generation == 2 and r.read() == b"from the second writer"
    finally:
        child.kill()
        child.join()


def test_closed_ring_is_replaced_and_non_ring_is_kept(shm_dir):
    path = shm_dir / "c"
    ring.create(path, CAP).close()
    with ring.create(path, CAP) as w:
        assert w.generation == 2
    other = shm_dir / "not-a-ring"
    other.write_bytes(b"precious user data")
    with pytest.raises(RingFormatError, match="not a ring"):
        ring.create(other, CAP)
    assert other.read_bytes() == b"precious user data"


def test_unlink_removes_only_its_own_file(shm_dir):
    path = shm_dir / "u"
    w1 = ring.create(path, CAP)
    w1.close()
    w2 = ring.create(path, CAP)                  # replaced w1's file
    w1.unlink()                                  # must not remove w2's file
    assert path.exists()
    w2.unlink()
    assert not path.exists()
    w2.close()


# ---- bad files, each attached in a subprocess ----------------------------------------------

_ATTACH = """
import sys
from alphapulse import ring
from alphapulse.errors import ProducerGone, RingFormatError
try:
    r = ring.attach(sys.argv[1])
    try:
        while True:
            r.read()
    finally:
        r.close()
except RingFormatError as exc:
    print("RingFormatError:", exc)
    sys.exit(0)
except ProducerGone:
    print("clean")
    sys.exit(5)
except BaseException as exc:
    print("other:", type(exc).__name__, exc)
    sys.exit(3)
"""


def _patched(buf: bytearray, offset: int, fmt: str, value: int, reseal: bool = True) -> bytearray:
    out = bytearray(buf)
    struct.pack_into(fmt, out, offset, value)
    if reseal:
        _reseal(out)
    return out


@pytest.fixture(scope="module")
def valid_ring(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "ring"
    w = ring.create(path, CAP)
    w.write(b"one record")
    w.close()
    return path.read_bytes()


BAD_CASES = {
    "empty": lambda good: b"",
    "short header": lambda good: good[:100],
    "not a ring": lambda good: os.urandom(len(good)),
    "zeros": lambda good: bytes(len(good)),
    "truncated data": lambda good: good[: ring.HEADER_BYTES + 100],
    "padded": lambda good: good + b"\0" * 4096,
    "version": lambda good: _patched(good, 8, "<I", 2),
    "header size": lambda good: _patched(good, 12, "<I", 64),
    "capacity": lambda good: _patched(good, 16, "<Q", 3000),
    "capacity huge": lambda good: _patched(good, 16, "<Q", 1 << 40),
    "max record": lambda good: _patched(good, 24, "<Q", CAP),
    "policy": lambda good: _patched(good, 32, "<I", 9),
    "checksum": lambda good: _patched(good, 48, "<Q", 12345, reseal=False),
    "state": lambda good: _patched(good, 64, "<I", 77),
    "head behind tail": lambda good: _patched(_patched(good, 128, "<Q", 8), 256, "<Q", 64),
    "head misaligned": lambda good: _patched(good, 128, "<Q", 13),
    "head far ahead": lambda good: _patched(good, 128, "<Q", 1 << 40),
    "record length": lambda good: _patched(good, 512, "<Q", (0xA1 << 32) | 0xFFFFFF),
    "record kind": lambda good: _patched(good, 512, "<Q", (0x77 << 32) | 10),
    "zero-length record": lambda good: _patched(good, 512, "<Q", 0xA1 << 32),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_raises_in_subprocess(tmp_path, valid_ring, case):
    path = tmp_path / "bad"
    path.write_bytes(bytes(BAD_CASES[case](valid_ring)))
    proc = subprocess.run([sys.executable, "-c", _ATTACH, str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.startswith("RingFormatError:")


def test_valid_file_reads_cleanly_in_subprocess(tmp_path, valid_ring):
    """The control case for the bad files: the unpatched copy is read to its clean end."""
    path = tmp_path / "good"
    path.write_bytes(valid_ring)
    proc = subprocess.run([sys.executable, "-c", _ATTACH, str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 5, (proc.stdout, proc.stderr)


def test_directory_and_fifo_are_not_rings(shm_dir):
    (shm_dir / "d").mkdir()
    with pytest.raises(RingFormatError):
        ring.attach(shm_dir / "d")
    os.mkfifo(shm_dir / "f")
    with pytest.raises(RingFormatError):
        ring.attach(shm_dir / "f")


def test_forked_copies_do_not_end_the_stream(shm_dir):
    """A child forked after create/attach drops its copies: the parent's ring stays live and
    its reader slot stays the parent's."""
    w = ring.create(shm_dir / "fork", CAP)
    r = ring.attach(shm_dir / "fork")
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            r.close()
            w.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ring.inspect(w.path)["state"] == 1 and w.reader_pid == os.getpid()
    assert w.write(b"still here") and r.read() == b"still here"
    r.close()
    w.close()
