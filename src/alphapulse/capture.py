"""Capture files: JSON Lines of raw exchange frames, optionally with receive timestamps.

Two line forms, both accepted by every reader:

* raw: the frame exactly as the exchange sent it (a WebSocket text frame, or a REST body);
  this is the form of ``shared/fixtures``.
* envelope: ``{"ts_recv":<int ns>,"src":"ws"|"rest","frame":<the frame, byte for byte>}``.
  The frame is embedded verbatim (not re-encoded as a JSON string), so the reader can slice
  the exact original bytes back out; the fixed prefix is what marks the envelope form.  A
  frame that contains a newline (pretty-printed JSON) is stored instead as
  ``{"ts_recv":..,"src":..,"text":"<JSON string>"}``, which is exact too.

Files ending in ``.gz`` are read and written gzip-compressed.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

__all__ = ["CaptureRecord", "CaptureWriter", "Recorder", "read_capture", "read_frames",
           "iter_records"]

_ENVELOPE = re.compile(rb'^\{"ts_recv":(\d+),"src":"(ws|rest)","(frame|text)":')


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One captured frame.  ``ts_recv`` (ns) and ``source`` are None for raw lines."""

    frame: bytes
    ts_recv: int | None = None
    source: str | None = None     # "ws" | "rest" | None (unknown: raw form)


def _open_read(path: str | os.PathLike[str]) -> IO[bytes]:
    p = Path(path)
    return gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")  # noqa: SIM115


def parse_line(line: bytes) -> CaptureRecord | None:
    """One line (without its newline) -> record; None for a blank line."""
    line = line.rstrip(b"\r\n")
    if not line.strip():
        return None
    m = _ENVELOPE.match(line)
    if m is None or not line.endswith(b"}"):
        return CaptureRecord(line)
    ts, src, kind = int(m.group(1)), m.group(2).decode(), m.group(3)
    body = line[m.end():-1]
    if kind == b"text":
        body = orjson.loads(body).encode()
    return CaptureRecord(body, ts, src)


def iter_records(lines: Iterable[bytes]) -> Iterator[CaptureRecord]:
    for line in lines:
        rec = parse_line(line)
        if rec is not None:
            yield rec


def read_capture(path: str | os.PathLike[str]) -> Iterator[CaptureRecord]:
    """The records of one capture file, in order (raw and envelope lines may be mixed)."""
    with _open_read(path) as fh:
        yield from iter_records(fh)


def read_frames(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[bytes]:
    """Just the frames of one or more captures, concatenated in the order given."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return [rec.frame for p in paths for rec in read_capture(p)]


def envelope(frame: bytes | str, ts_recv: int, source: str = "ws") -> bytes:
    """The envelope line (without newline) for a frame."""
    if isinstance(frame, str):
        frame = frame.encode()
    if source not in ("ws", "rest"):
        raise ValueError(f"source must be 'ws' or 'rest', not {source!r}")
    if b"\n" in frame or b"\r" in frame:
        return b'{"ts_recv":%d,"src":"%s","text":%s}' % (
            ts_recv, source.encode(), orjson.dumps(frame.decode()))
    return b'{"ts_recv":%d,"src":"%s","frame":%s}' % (ts_recv, source.encode(), frame)


class CaptureWriter:
    """Append frames to one JSON Lines file (``raw=True`` writes the fixture form)."""

    def __init__(self, path: str | os.PathLike[str], *, raw: bool = False,
                 buffer_size: int = 1 << 16) -> None:
        self.path = Path(path)
        self.raw = raw
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh: IO[bytes]
        if self.path.suffix == ".gz":
            fh = gzip.open(self.path, "ab")  # noqa: SIM115
        else:
            fh = open(self.path, "ab", buffering=buffer_size)  # noqa: SIM115
        self._fh = fh
        self.count = 0

    def write(self, frame: bytes | str, ts_recv: int | None = None, source: str = "ws") -> None:
        if isinstance(frame, str):
            frame = frame.encode()
        if self.raw:
            # Raw form is one frame per line: a multi-line frame is made one line (JSON
            # whitespace only; strings cannot hold raw newlines).
            line = frame.replace(b"\r", b"").replace(b"\n", b" ") if b"\n" in frame else frame
        else:
            line = envelope(frame, ts_recv if ts_recv is not None else time.time_ns(), source)
        self._fh.write(line + b"\n")
        self.count += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Recorder:
    """Records every raw frame of one exchange into ``DIR/<exchange>-<UTC start>.jsonl``.

    Envelope form (with receive timestamps).  A new file is started every ``rotate_s``
    seconds (default daily) so a long-running server never grows one file forever.
    Writes go to a buffered file: cheap enough for the read loop; flushed every
    ``flush_every`` records and on close.
    """

    def __init__(self, directory: str | os.PathLike[str], exchange: str, *,
                 rotate_s: float = 86400.0, flush_every: int = 256, compress: bool = False):
        self.directory = Path(directory)
        self.exchange = exchange
        self.rotate_s, self.flush_every, self.compress = rotate_s, flush_every, compress
        self._writer: CaptureWriter | None = None
        self._opened = 0.0
        self.files: list[Path] = []
        self.count = 0

    def _open(self) -> CaptureWriter:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        suffix = ".jsonl.gz" if self.compress else ".jsonl"
        path = self.directory / f"{self.exchange}-{stamp}{suffix}"
        n = 1
        while path in self.files or path.exists():
            path = self.directory / f"{self.exchange}-{stamp}-{n}{suffix}"
            n += 1
        self.files.append(path)
        self._opened = time.monotonic()
        return CaptureWriter(path)

    def write(self, frame: bytes | str, ts_recv: int, source: str = "ws") -> None:
        w = self._writer
        if w is None or time.monotonic() - self._opened > self.rotate_s:
            if w is not None:
                w.close()
            w = self._writer = self._open()
        w.write(frame, ts_recv, source)
        self.count += 1
        if self.count % self.flush_every == 0:
            w.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dumps_lines(records: Iterable[CaptureRecord]) -> bytes:
    """Records -> envelope JSON Lines (raw lines where a record has no timestamp)."""
    out = io.BytesIO()
    for rec in records:
        if rec.ts_recv is None:
            out.write(rec.frame + b"\n")
        else:
            out.write(envelope(rec.frame, rec.ts_recv, rec.source or "ws") + b"\n")
    return out.getvalue()
