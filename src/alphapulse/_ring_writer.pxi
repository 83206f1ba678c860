# Included by _ring.pyx: the producing end.  Hot path: write() -> _put() -> _publish().
# ======================================================================================
# writer
# ======================================================================================

cdef class Writer:
    """The producing end of a ring.  Create it with ``alphapulse.ring.create()``.

    ``write`` never blocks: it returns False when the ring is full (lossless policy: nothing
    changed, retry later; drop policy: the record is counted as dropped and the reader will be
    told exactly how many it missed before the next record it gets)."""

    def __init__(self, object mm, str path):
        cdef unsigned char *data
        cdef RingHeader *h
        owner = memoryview(mm)
        h = _map(owner, mm, &data)
        if h.writer_pid != getpid():
            owner.release()
            raise RingError(f"{path}: ring belongs to writer pid {h.writer_pid}")
        # Only now: __dealloc__ acts on _hdr, and a failed __init__ must not touch the ring.
        self._hdr = h
        self._mm = mm
        self._buffer_owner = owner
        self._data = data
        self.path = path
        self._cap = self._hdr.capacity
        self._mask = self._cap - 1
        self._max_record = self._hdr.max_record
        self._head = ap_load_acquire_u64(&self._hdr.head)
        self._tail_cache = ap_load_acquire_u64(&self._hdr.tail)
        self._drop = self._hdr.policy == POLICY_DROP
        self._dropped = self._hdr.dropped

    def __dealloc__(self):
        # A writer collected without close() still tells its reader it is done: otherwise
        # the reader would wait for a process that is alive but will never write again.
        # Only in the writer's own process: a forked child's copy must not end the stream.
        if self._hdr != NULL and self._hdr.writer_pid == getpid():
            ap_store_release_u32(&self._hdr.state, STATE_CLOSED)
            ap_futex_wake(ap_futex_word(&self._hdr.head))
        self._hdr = NULL

    cdef int _check_open(self) except -1:
        if self._hdr == NULL:
            raise ValueError(f"ring writer {self.path} is closed")
        return 0

    cdef void _publish(self) noexcept nogil:
        # No syscall unless the reader sleeps; no fence either (see ap_publish_head).
        if ap_publish_head(&self._hdr.head, self._head, &self._hdr.sleeping):
            ap_futex_wake(ap_futex_word(&self._hdr.head))

    cdef int _put(self, const unsigned char *src, Py_ssize_t n) except -1:
        """Frame and copy one record without publishing it.  1 written, 0 full."""
        cdef uint64_t frame, pos, rec, end, off, head = self._head
        cdef uint64_t cap = self._cap
        cdef unsigned char *data = self._data
        if n <= 0 or <uint64_t>n > self._max_record:
            if n <= 0:
                raise ValueError("ring records must be at least 1 byte")
            raise ValueError(f"record of {n} bytes exceeds max_record {self._max_record}")
        frame = _frame(<uint64_t>n)
        pos = head
        if self._pending_missed:
            off = pos & self._mask
            if off + NOTICE_FRAME > cap:
                pos += cap - off
            pos += NOTICE_FRAME
        off = pos & self._mask
        rec = pos + (cap - off) if off + frame > cap else pos
        end = rec + frame
        if self._pending_missed and head - self._tail_cache > (cap >> 1):
            # Inside a drop episode keep dropping until the reader has freed half the ring:
            # otherwise a small record that happens to fit splits one lag into many overrun
            # notices with stray records between them (issue 7, lagging-reader scenario).
            self._tail_cache = ap_load_acquire_u64(&self._hdr.tail)
            if head - self._tail_cache > (cap >> 1):
                self._dropped += 1
                self._pending_missed += 1
                ap_store_relaxed_u64(&self._hdr.dropped, self._dropped)
                return 0
        if end - self._tail_cache > cap:
            self._tail_cache = ap_load_acquire_u64(&self._hdr.tail)
            if end - self._tail_cache > cap:
                if self._drop:
                    self._dropped += 1
                    self._pending_missed += 1
                    ap_store_relaxed_u64(&self._hdr.dropped, self._dropped)
                return 0
        if self._pending_missed:
            off = head & self._mask
            if off + NOTICE_FRAME > cap:
                (<uint64_t *>(data + off))[0] = (<uint64_t>KIND_PAD) << 32
                head += cap - off
                off = 0
            (<uint64_t *>(data + off))[0] = ((<uint64_t>KIND_NOTICE) << 32) | 8
            (<uint64_t *>(data + off + 8))[0] = self._pending_missed
            head += NOTICE_FRAME
            self._pending_missed = 0
        if rec != head:
            (<uint64_t *>(data + (head & self._mask)))[0] = (<uint64_t>KIND_PAD) << 32
        off = rec & self._mask
        (<uint64_t *>(data + off))[0] = ((<uint64_t>KIND_DATA) << 32) | <uint64_t>n
        memcpy(data + off + FRAME_HEADER, src, n)
        self._head = end
        return 1

    def write(self, data) -> bool:
        """Append one record (bytes-like, 1..max_record bytes); publish it at once.

        Returns False when the ring is full (see the class docstring for what that means
        under each policy)."""
        cdef Py_buffer view
        cdef int ok
        if self._hdr == NULL:
            self._check_open()
        if PyBytes_CheckExact(data):
            ok = self._put(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                ok = self._put(<const unsigned char *>view.buf, view.len)
            finally:
                PyBuffer_Release(&view)
        if ok:
            self._publish()
            return True
        return False

    def write_many(self, records) -> int:
        """Append a sequence of records and publish them with a single head store.

        Returns how many were written: always a prefix of ``records``.  Lossless: stops at the
        first record that does not fit.  Drop: that record and every later one in the batch are
        counted as dropped, so the reader sees one gap, in order."""
        cdef Py_ssize_t i, n, written = 0
        cdef Py_buffer view
        cdef int ok
        cdef object item
        self._check_open()
        seq = PySequence_Fast(records, "write_many() needs a sequence of bytes-like records")
        n = PySequence_Fast_GET_SIZE(seq)
        try:
            for i in range(n):
                item = <object>PySequence_Fast_GET_ITEM(seq, i)
                if PyBytes_CheckExact(item):
                    ok = self._put(<const unsigned char *>PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item))
                else:
                    PyObject_GetBuffer(item, &view, PyBUF_SIMPLE)
                    try:
                        ok = self._put(<const unsigned char *>view.buf, view.len)
                    finally:
                        PyBuffer_Release(&view)
                if not ok:
                    if self._drop and i + 1 < n:
                        self._dropped += n - i - 1
                        self._pending_missed += n - i - 1
                        ap_store_relaxed_u64(&self._hdr.dropped, self._dropped)
                    break
                written += 1
        finally:
            if written:
                self._publish()
        return written

    cdef int _flush_notice(self) except -1:
        """Publish a lone overrun notice (used at close, when no record follows the drops)."""
        cdef uint64_t head = self._head, off = head & self._mask, end
        if not self._pending_missed:
            return 0
        end = head + NOTICE_FRAME + ((self._cap - off) if off + NOTICE_FRAME > self._cap else 0)
        if end - ap_load_acquire_u64(&self._hdr.tail) > self._cap:
            return 0
        if off + NOTICE_FRAME > self._cap:
            (<uint64_t *>(self._data + off))[0] = (<uint64_t>KIND_PAD) << 32
            head += self._cap - off
            off = 0
        (<uint64_t *>(self._data + off))[0] = ((<uint64_t>KIND_NOTICE) << 32) | 8
        (<uint64_t *>(self._data + off + 8))[0] = self._pending_missed
        self._pending_missed = 0
        self._head = head + NOTICE_FRAME
        self._publish()
        return 1

    def close(self) -> None:
        """Mark the ring closed (the reader drains what is left, then gets ProducerGone), wake
        the reader, and unmap.  The file stays; see ``unlink``.  Idempotent."""
        if self._hdr == NULL:
            return
        if self._hdr.writer_pid == getpid():     # not from a forked child's copy
            self._flush_notice()
            ap_store_release_u32(&self._hdr.state, STATE_CLOSED)
            ap_futex_wake(ap_futex_word(&self._hdr.head))
        self._hdr = NULL
        self._data = NULL
        self._buffer_owner.release()
        self._buffer_owner = None
        self._mm.close()
        self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    @property
    def closed(self) -> bool:
        return self._hdr == NULL

    @property
    def capacity(self) -> int:
        """Bytes in the data region (a power of two)."""
        return self._cap

    @property
    def max_record(self) -> int:
        """Largest record ``write`` accepts, in bytes."""
        return self._max_record

    @property
    def policy(self) -> str:
        return "drop" if self._drop else "lossless"

    @property
    def dropped(self) -> int:
        """Records dropped since the ring was created (drop policy only)."""
        return self._dropped

    @property
    def generation(self) -> int:
        self._check_open()
        return self._hdr.generation

    @property
    def backlog(self) -> int:
        """Bytes published and not yet consumed (framing included)."""
        self._check_open()
        return self._head - ap_load_acquire_u64(&self._hdr.tail)

    @property
    def reader_pid(self) -> int:
        """Pid of the attached reader, 0 when none is attached."""
        self._check_open()
        return ap_load_acquire_i32(&self._hdr.reader_pid)

    @property
    def reader_state(self) -> str:
        """"waiting" (no reader has attached yet), "attached" (a live reader), or "gone" (the
        reader closed or died).  A new reader may still attach to a "gone" ring and resume."""
        self._check_open()
        pid = ap_load_acquire_i32(&self._hdr.reader_pid)
        if pid > 0:
            return "attached" if ap_process_alive(pid, self._hdr.reader_start) else "gone"
        return "gone" if self._hdr.reader_start else "waiting"

    @property
    def reader_attached(self) -> bool:
        """True while a reader is attached and its process is alive (pid + start time)."""
        self._check_open()
        pid = ap_load_acquire_i32(&self._hdr.reader_pid)
        return pid > 0 and bool(ap_process_alive(pid, self._hdr.reader_start))
