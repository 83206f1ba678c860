"""Named shared-memory rings: one writer process, one reader process, about a microsecond apart.

A ring is a file (by default under ``/dev/shm``) that its writer creates and one reader maps::

    from alphapulse import ring

    with ring.create("ticks", capacity=1 << 20) as w:      # /dev/shm/ticks, mode 0o600
        w.write(b"...")                                     # False when full (nothing changed)

    with ring.attach("ticks", timeout=5) as r:              # in another process
        for record in r:                                    # blocks; ends when the writer closes
            ...

Several readers need several rings: a server fans out by creating one ring per reader and
writing each record to each of them.  ``Fanout`` does exactly that, and ``Fanout.prune()``
closes and unlinks the rings whose reader closed or died (``RingWriter.reader_state``)::

    fan = ring.Fanout(capacity=1 << 22, policy="drop")   # a slow reader loses only its own
    fan.add("feed-strategy-a"); fan.add("feed-strategy-b")
    fan.write(record)                                    # to every ring
    fan.prune(grace=10)                                  # now and then

Records are 1 byte to ``capacity // 2 - 32`` bytes.  ``read`` raises RingOverrun(missed) where
a drop-policy writer lost records and ProducerGone once the writer closed or died (kill -9
included) and everything it published has been read.  Zero-copy (``read_view``/``advance``)
and batch calls (``write_many``, ``read_many``, ``read_many_into``) amortise the Python call.
A writer or reader belongs to the process that made it: a forked child must not use its copy.

This module owns everything about files: atomic creation (a fully initialised temporary file is
linked into place, so a reader never sees a half-written header), permissions, replacing the
stale file of a dead writer, validating a file before mapping it.  The data path is
``alphapulse._ring``; here it only gains ``async for``.
"""
from __future__ import annotations

import asyncio
import errno
import grp
import mmap
import os
import secrets
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import _ring
from .errors import ProducerGone, RingError, RingFormatError, RingPermissionError

__all__ = ["DEFAULT_DIR", "Fanout", "RingReader", "RingWriter", "attach", "create", "inspect",
           "resolve"]

DEFAULT_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
HEADER_BYTES: int = _ring.HEADER_BYTES
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_STATE_CLOSED = 2

# asyncio adapter tuning: after the ring runs dry, poll it cooperatively (yielding to the loop)
# for this long before parking a helper thread in the futex wait.  Bursts then cost no thread
# hand-off; an idle feed costs nothing.
_ASYNC_POLL_S = 0.0002
_ASYNC_WAIT_SLICE_S = 0.05


def resolve(path: str | os.PathLike[str]) -> Path:
    """A bare name (no directory part) lives in DEFAULT_DIR; anything else is taken as given."""
    text = os.fspath(path)
    if not text:
        raise ValueError("ring path must not be empty")
    return DEFAULT_DIR / text if os.sep not in text else Path(text)


class RingWriter(_ring.Writer):
    """The producing end (see ``alphapulse._ring.Writer`` for write/write_many/close)."""

    __slots__ = ("_ident",)

    def unlink(self) -> None:
        """Remove the ring's file name, if it still names this ring (never another writer's).

        Works before or after ``close()``; a reader that has the ring mapped keeps reading."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._ident:
            os.unlink(self.path)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"capacity={self.capacity} policy={self.policy}"
        return f"<RingWriter {self.path} {state}>"


class RingReader(_ring.Reader):
    """The consuming end (see ``alphapulse._ring.Reader`` for read/read_many/read_view/wait)."""

    __slots__ = ()

    def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for record in reader``: never blocks the event loop.

        Ends when the writer closes cleanly; raises ProducerGone if it died and RingOverrun
        where records were dropped (iterate again to continue after handling it)."""
        return _aiter(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"capacity={self.capacity} writer={self.writer_pid}"
        return f"<RingReader {self.path} {state}>"


async def _aiter(reader: RingReader, batch: int = 256) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    executor: ThreadPoolExecutor | None = None
    poll_s = _ASYNC_POLL_S
    try:
        while True:
            try:
                records = reader.read_many(batch)
            except ProducerGone:
                if reader.writer_closed:
                    return
                raise
            if records:
                for record in records:
                    yield record
                continue
            # Empty.  First yield to the loop for a while (cheap; catches the next record of a
            # busy feed with no thread hand-off).  The budget adapts: it doubles when polling
            # found data and halves (down to nothing) when it did not, so an idle or slow feed
            # does not keep the loop spinning.
            found = False
            if poll_s:
                until = time.monotonic() + poll_s
                while time.monotonic() < until:
                    await asyncio.sleep(0)
                    if reader.wait(0, 0):
                        found = True
                        break
                poll_s = min(poll_s * 2, _ASYNC_POLL_S) if found else poll_s / 2
                if poll_s < _ASYNC_POLL_S / 16:
                    poll_s = 0.0
            if not found:
                # Park a helper thread in the futex wait (GIL released), in slices, so a
                # cancelled iteration leaves that thread within one slice.
                if executor is None:
                    executor = ThreadPoolExecutor(1, thread_name_prefix="alphapulse-ring")
                found = await loop.run_in_executor(executor, reader.wait, _ASYNC_WAIT_SLICE_S, 0)
                if found and not poll_s:
                    poll_s = _ASYNC_POLL_S / 8
    finally:
        if executor is not None:
            executor.shutdown(wait=False)


class Fanout:
    """One producer, many readers: a ring per reader, each record written to every ring.

    A slow reader only loses its own records (use the drop policy so the producer never
    waits); ``prune`` closes and unlinks the rings whose reader closed or died, or never came
    within ``grace`` seconds.  Not thread-safe: one producer thread owns it, like a writer.
    """

    def __init__(self, capacity: int = 1 << 20, *, policy: str = "drop", mode: int = 0o600,
                 group: int | str | None = None) -> None:
        self._options = {"capacity": capacity, "policy": policy, "mode": mode, "group": group}
        self._rings: dict[str, tuple[RingWriter, float]] = {}

    def add(self, path: str | os.PathLike[str]) -> RingWriter:
        """Create the ring for one more reader (replacing a stale file at ``path``)."""
        writer = create(path, **self._options)  # type: ignore[arg-type]
        self._rings[writer.path] = (writer, time.monotonic())
        return writer

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Close and unlink one reader's ring."""
        entry = self._rings.pop(str(resolve(path)), None)
        if entry is not None:
            entry[0].close()
            entry[0].unlink()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` to every ring; returns how many rings took it."""
        taken = 0
        for writer, _ in self._rings.values():
            taken += writer.write(data)
        return taken

    def write_many(self, records: list[bytes]) -> int:
        """``write_many`` on every ring; returns the smallest number any ring took."""
        if not self._rings:
            return len(records)
        return min(writer.write_many(records) for writer, _ in self._rings.values())

    def prune(self, grace: float = 10.0) -> list[str]:
        """Close and unlink rings whose reader is gone (or never attached within ``grace``
        seconds); returns their paths."""
        now = time.monotonic()
        gone = [path for path, (writer, born) in self._rings.items()
                if writer.reader_state == "gone"
                or (writer.reader_state == "waiting" and now - born > grace)]
        for path in gone:
            self.remove(path)
        return gone

    @property
    def paths(self) -> list[str]:
        return list(self._rings)

    def __len__(self) -> int:
        return len(self._rings)

    def close(self) -> None:
        """Close every ring (readers drain them, then see ProducerGone); the files stay."""
        for writer, _ in self._rings.values():
            writer.close()
        self._rings.clear()

    def __enter__(self) -> Fanout:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _group_id(group: int | str | None) -> int | None:
    if group is None or isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"group {group!r} does not exist") from None


def _existing(target: Path) -> tuple[os.stat_result, tuple[int, int, int, int]] | None:
    """The identity of the ring file at ``target``, None if there is none; raises if the path
    holds something that is not a ring (we never replace a file we did not make)."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise RingPermissionError(errno.EACCES, "ring file exists and is not ours", str(target)) from exc
    try:
        st = os.fstat(fd)
        ident = _ring.identity(os.pread(fd, 128, 0)) if stat.S_ISREG(st.st_mode) else None
    finally:
        os.close(fd)
    if ident is None:
        raise RingFormatError(f"{target} exists and is not a ring file; refusing to replace it")
    return st, ident


def create(path: str | os.PathLike[str], capacity: int = 1 << 20, *, policy: str = "lossless",
           mode: int = 0o600, group: int | str | None = None) -> RingWriter:
    """Create the ring file ``path`` and return its writer.

    ``capacity`` is the data region in bytes (a power of two, 4 KiB .. 2 GiB); records may be up
    to ``capacity // 2 - 32`` bytes.  ``policy`` is "lossless" (``write`` returns False when full)
    or "drop" (``write`` returns False and the reader is told how many it missed).  The file gets
    exactly ``mode`` (default owner read/write only) and optionally ``group``.

    An existing ring whose writer is dead or closed it is replaced (its generation + 1); one
    with a live writer raises RingError (EEXIST); a non-ring file is never touched
    (RingFormatError).
    """
    if capacity < _ring.MIN_CAPACITY or capacity > _ring.MAX_CAPACITY or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two in [{_ring.MIN_CAPACITY}, "
                         f"{_ring.MAX_CAPACITY}], got {capacity}")
    if policy not in _ring.POLICIES:
        raise ValueError(f"policy must be 'lossless' or 'drop', got {policy!r}")
    target = resolve(path)
    gid = _group_id(group)
    pid = os.getpid()
    start = _ring.process_start(pid)
    size = HEADER_BYTES + capacity
    for _attempt in range(5):
        old = _existing(target)
        generation = 1
        if old is not None:
            st_old, (old_pid, old_start, old_gen, old_state) = old
            if old_state != _STATE_CLOSED and _ring.process_alive(old_pid, old_start):
                raise RingError(errno.EEXIST, f"ring is in use by live writer pid {old_pid}", str(target))
            generation = old_gen + 1
        tmp = target.with_name(f".{target.name}.{pid}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode & 0o777)
        mm = None
        try:
            os.fchmod(fd, mode)          # exactly `mode`, whatever the umask
            if gid is not None:
                os.fchown(fd, -1, gid)
            try:
                os.posix_fallocate(fd, 0, size)   # ENOSPC now rather than SIGBUS on a later write
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED | _MAP_POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
            _ring.init_header(mm, capacity, policy, pid, start, generation, time.time_ns())
            if old is None:
                try:
                    os.link(tmp, target)       # atomic, and fails if someone beat us to it
                except FileExistsError:
                    mm.close()
                    mm = None
                    continue
            else:
                try:
                    now = os.stat(target, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_dev, now.st_ino) != (st_old.st_dev, st_old.st_ino):
                    mm.close()                 # replaced under us: look again
                    mm = None
                    continue
                os.rename(tmp, target)         # atomic replacement of the stale ring
            st = os.fstat(fd)
        except BaseException:
            if mm is not None:
                mm.close()
            raise
        finally:
            os.close(fd)                       # the mapping keeps the file
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        writer = RingWriter(mm, str(target))
        writer._ident = (st.st_dev, st.st_ino)
        return writer
    raise RingError(errno.EBUSY, "ring file keeps changing while creating it", str(target))


def _open_for_attach(target: Path, deadline: float | None) -> int:
    while True:
        try:
            return os.open(target, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if deadline is None or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
        except PermissionError as exc:
            raise RingPermissionError(errno.EACCES, "no permission to attach to ring (the reader "
                                      "needs read and write access)", str(target)) from exc
        except IsADirectoryError as exc:
            raise RingFormatError(f"{target} is a directory, not a ring file") from exc


def attach(path: str | os.PathLike[str], *, timeout: float | None = None,
           spin_us: float = 50.0) -> RingReader:
    """Map the ring ``path`` for reading.

    ``timeout``: wait up to that many seconds for the file to appear (None: do not wait).
    ``spin_us``: how long ``wait`` spins before sleeping on the futex.

    Raises FileNotFoundError, RingPermissionError, RingFormatError (not a ring, another layout
    version, truncated, corrupt) or RingError (another live reader is attached).
    """
    target = resolve(path)
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = _open_for_attach(target, deadline)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RingFormatError(f"{target} is not a regular file")
        _ring.read_header(os.pread(fd, HEADER_BYTES, 0), st.st_size)
        mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED | _MAP_POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    try:
        return RingReader(mm, str(target), int(spin_us * 1000))
    except BaseException:
        mm.close()
        raise


def inspect(path: str | os.PathLike[str]) -> dict[str, object]:
    """The validated header of a ring file as a dict (read-only; attaches nothing)."""
    target = resolve(path)
    try:
        with open(target, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise RingFormatError(f"{target} is not a regular file")
            fields = _ring.read_header(f.read(HEADER_BYTES), st.st_size)
    except PermissionError as exc:
        raise RingPermissionError(errno.EACCES, "no permission to read ring", str(target)) from exc
    fields["writer_alive"] = (fields["state"] != _STATE_CLOSED
                              and _ring.process_alive(fields["writer_pid"], fields["writer_start"]))
    fields["path"] = str(target)
    return fields
