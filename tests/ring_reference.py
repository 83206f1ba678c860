"""A pure-Python model of the ring's framing: the oracle for the compiled ring's unit tests.

It follows the written rules, not the C code: a record occupies an 8-byte length word plus the
payload rounded up to 8 bytes; a frame never wraps (a PAD word sends the reader to the start of
the region); after drops, a 16-byte notice carrying the missed count precedes the next record.
``head``/``tail`` are the free-running byte counters the real ring keeps in its header, so a test
can compare positions, not only payloads.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from alphapulse.errors import RingOverrun

FRAME_HEADER = 8
NOTICE_FRAME = 16


def frame_size(length: int) -> int:
    return FRAME_HEADER + (length + 7) // 8 * 8


@dataclass
class _Frame:
    kind: str              # "data" | "notice"
    start: int             # counter where the frame begins (after any padding)
    payload: bytes = b""
    missed: int = 0

    @property
    def end(self) -> int:
        return self.start + (NOTICE_FRAME if self.kind == "notice" else frame_size(len(self.payload)))


class RingModel:
    """What a writer/reader pair in one process must do, step by step."""

    def __init__(self, capacity: int, policy: str = "lossless") -> None:
        self.capacity = capacity
        self.max_record = capacity // 2 - 32
        self.drop = policy == "drop"
        self.head = 0
        self.tail = 0
        self.dropped = 0
        self.pending = 0
        self.frames: deque[_Frame] = deque()

    def _place(self, pos: int, size: int) -> int:
        """Where a frame of ``size`` bytes starts if the next free byte is ``pos``."""
        off = pos % self.capacity
        return pos + (self.capacity - off) if off + size > self.capacity else pos

    def write(self, data: bytes) -> bool:
        if not 1 <= len(data) <= self.max_record:
            raise ValueError(len(data))
        pos = self.head
        notice_at = None
        if self.pending:
            notice_at = self._place(pos, NOTICE_FRAME)
            pos = notice_at + NOTICE_FRAME
        start = self._place(pos, frame_size(len(data)))
        end = start + frame_size(len(data))
        # inside a drop episode nothing is written until the reader has freed half the ring
        hold = self.pending and self.head - self.tail > self.capacity // 2
        if hold or end - self.tail > self.capacity:
            if self.drop:
                self.dropped += 1
                self.pending += 1
            return False
        if notice_at is not None:
            self.frames.append(_Frame("notice", notice_at, missed=self.pending))
            self.pending = 0
        self.frames.append(_Frame("data", start, bytes(data)))
        self.head = end
        return True

    def write_many(self, records: list[bytes]) -> int:
        for i, rec in enumerate(records):
            if not self.write(rec):
                if self.drop:
                    rest = len(records) - i - 1
                    self.dropped += rest
                    self.pending += rest
                return i
        return len(records)

    def read(self) -> bytes | None:
        if not self.frames:
            return None
        frame = self.frames.popleft()
        self.tail = frame.end
        if frame.kind == "notice":
            raise RingOverrun(frame.missed)
        return frame.payload

    def read_many(self, max_records: int) -> list[bytes]:
        out: list[bytes] = []
        while len(out) < max_records and self.frames:
            if self.frames[0].kind == "notice" and out:
                break
            rec = self.read()
            assert rec is not None
            out.append(rec)
        return out

    @property
    def backlog(self) -> int:
        return self.head - self.tail
