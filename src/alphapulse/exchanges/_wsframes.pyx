# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled frame slicing for the collectors' WebSocket reads: every complete *simple* frame at
the head of a buffer, handed to a handler (direct dispatch) or returned as a list, and how much
of an incomplete one is still to come.

A simple frame is what exchange feeds send almost exclusively: final, unmasked, text or
binary, no RSV bits, a 7- or 16-bit length, within the size limit.  Both scans stop at the
first byte that does not start one (a control frame, a fragment, a 64-bit length, a partial
frame at the end) and report how far they got, so the caller hands the rest to
``websockets`` unchanged: pings, the closing handshake, limits and errors behave as before.
No I/O, no asyncio: bytes in, payloads out.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize


cdef enum:
    _NOT_SIMPLE = -1        # no simple frame starts here (or one over the size limit)
    _HEAD_PARTIAL = -2      # a simple frame starts here, its length not all in yet

NOT_SIMPLE = _NOT_SIMPLE
HEAD_PARTIAL = _HEAD_PARTIAL


cdef inline Py_ssize_t _frame_head(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos,
                                   Py_ssize_t limit, Py_ssize_t *length) noexcept nogil:
    """The payload's offset of the simple frame starting at ``pos`` (its size in ``length``;
    the payload may not be all in), _NOT_SIMPLE or _HEAD_PARTIAL."""
    cdef Py_ssize_t size, start
    if n - pos < 1 or (p[pos] != 0x81 and p[pos] != 0x82):   # FIN + text/binary, no RSV
        return _NOT_SIMPLE
    if n - pos < 2:
        return _HEAD_PARTIAL
    size = p[pos + 1]
    if size >= 126:                             # bit 7 set = masked: never from a server
        if size != 126:
            return _NOT_SIMPLE
        if n - pos < 4:
            return _HEAD_PARTIAL
        size = (p[pos + 2] << 8) | p[pos + 3]
        start = pos + 4
    else:
        start = pos + 2
    if limit >= 0 and size > limit:
        return _NOT_SIMPLE
    length[0] = size
    return start


cdef inline Py_ssize_t _payload_at(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos,
                                   Py_ssize_t limit, Py_ssize_t *length) noexcept nogil:
    """The payload's offset if a complete simple frame starts at ``pos`` (its size in
    ``length``), else -1."""
    cdef Py_ssize_t start = _frame_head(p, n, pos, limit, length)
    if start < 0 or start + length[0] > n:
        return -1
    return start


def simple_missing(object data not None, Py_ssize_t limit):
    """For the simple frame at the head of ``data``: the bytes still to come (0 when it is
    complete); NOT_SIMPLE (-1) when ``data`` does not start one (empty, another kind, over
    ``limit``); HEAD_PARTIAL (-2) while its length is not all in yet."""
    cdef Py_buffer view
    cdef Py_ssize_t start, length = 0
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        start = _frame_head(<const unsigned char *>view.buf, view.len, 0, limit, &length)
        return start if start < 0 else start + length - view.len
    finally:
        PyBuffer_Release(&view)


def dispatch_frames(object data not None, object handler not None, long long ts_recv,
                    Py_ssize_t limit):
    """Call ``handler(payload, ts_recv)`` for each complete simple frame at the head of ``data``
    (any buffer) until one is not, or until the handler returns a false value or raises.

    ``limit``: the largest payload taken (a negative value: no limit); a larger frame stops
    the scan (``websockets`` then refuses it).  Returns ``(consumed, stop)``: the bytes of
    ``data`` taken (every frame handed over, including the one the handler stopped at), and
    ``None`` (the scan ran out of simple frames), ``False`` (the handler returned a false
    value) or the exception the handler raised (caught: the caller decides what to do).
    """
    cdef Py_buffer view
    cdef Py_ssize_t pos = 0, start, length = 0
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        while True:
            start = _payload_at(<const unsigned char *>view.buf, view.len, pos, limit, &length)
            if start < 0:
                return pos, None
            payload = PyBytes_FromStringAndSize(<const char *>view.buf + start, length)
            pos = start + length
            try:
                keep = handler(payload, ts_recv)
            except Exception as exc:
                return pos, exc
            if not keep:
                return pos, False
    finally:
        PyBuffer_Release(&view)


def slice_frames(object data not None, Py_ssize_t limit):
    """Every complete simple frame at the head of ``data``: ``(consumed, [(is_text, payload),
    ...])`` (``limit`` as for :func:`dispatch_frames`)."""
    cdef Py_buffer view
    cdef Py_ssize_t pos = 0, start, length = 0
    cdef list frames = []
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        while True:
            start = _payload_at(<const unsigned char *>view.buf, view.len, pos, limit, &length)
            if start < 0:
                return pos, frames
            frames.append((
                (<const unsigned char *>view.buf)[pos] == 0x81,
                PyBytes_FromStringAndSize(<const char *>view.buf + start, length)))
            pos = start + length
    finally:
        PyBuffer_Release(&view)
