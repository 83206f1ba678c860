"""Issue 7, scenario 11: shared-memory hygiene.

Ring files carry exactly the requested mode (0600 by default, or a configured group); a process
running as another user cannot attach and gets a clear ``RingPermissionError`` naming the file;
the feed's control socket refuses it too.  (Stale rings left by a SIGKILLed server being cleaned
on the next start is covered by tests/integration/test_feed.py::test_layout_permissions_and_name_in_use.)
"""
from __future__ import annotations

import grp
import os
import pwd
import stat

import pytest

from alphapulse import ring
from alphapulse.errors import RingPermissionError
from alphapulse.server.shm import ShmPublisher

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")


def _as_nobody(fn) -> tuple[int, str]:
    """Run ``fn()`` in a forked child as user nobody; (exit status, message) back."""
    nobody = pwd.getpwnam("nobody")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # child: drop privileges, try, report
        os.close(rfd)
        code, msg = 0, ""
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            msg = fn()
        except BaseException as exc:               # noqa: BLE001 - reported to the parent
            code, msg = 1, f"{type(exc).__name__}: {exc}"
        os.write(wfd, msg.encode()[:4000])
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        msg = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), msg


def test_ring_mode_and_foreign_reader_refused(shm_dir):
    os.chmod(shm_dir, 0o755)                       # the directory is not what protects the ring
    path = shm_dir / "private.ring"
    with ring.create(path, 1 << 16) as w:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        w.write(b"secret")

        def attach() -> str:
            ring.attach(path, timeout=0)
            return "attached"

        code, msg = _as_nobody(attach)
        assert code == 1 and msg.startswith("RingPermissionError"), msg
        assert str(path) in msg
        assert issubclass(RingPermissionError, PermissionError)


def test_configured_group_can_read(shm_dir):
    os.chmod(shm_dir, 0o755)
    nogroup = grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
    path = shm_dir / "group.ring"
    with ring.create(path, 1 << 16, mode=0o660, group=nogroup.gr_name) as w:
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == nogroup.gr_gid
        w.write(b"shared")

        def attach() -> str:
            r = ring.attach(path, timeout=0)
            rec = r.read()
            r.close()
            return repr(rec)

        code, msg = _as_nobody(attach)
        assert code == 0 and msg == repr(b"shared"), msg


def test_feed_directory_refuses_another_user(shm_dir):
    os.chmod(shm_dir, 0o755)
    pub = ShmPublisher("hyg", directory=shm_dir)
    pub.start()
    try:
        d = shm_dir / "alphapulse-hyg"
        assert stat.S_IMODE(d.stat().st_mode) == 0o700

        def attach() -> str:
            import alphapulse.feed as feedmod
            feedmod.attach("hyg", ["book:*:*"], directory=shm_dir)
            return "attached"

        code, msg = _as_nobody(attach)
        assert code == 1 and "hyg" in msg and "attached" not in msg, msg
    finally:
        pub.close()
