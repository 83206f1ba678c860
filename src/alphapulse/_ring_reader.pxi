# Included by _ring.pyx: the consuming end.  Hot path: read() -> _peek() -> _consume().
# ======================================================================================
# reader
# ======================================================================================

cdef class Reader:
    """The consuming end of a ring.  Attach with ``alphapulse.ring.attach()``.

    ``read`` returns the next record as bytes or None when the ring is empty; it raises
    RingOverrun(missed) once, in order, where the writer dropped records, and ProducerGone once
    the writer has closed or died and everything it published has been read."""

    def __init__(self, object mm, str path, int64_t spin_ns=DEFAULT_SPIN_NS):
        cdef unsigned char *data
        cdef int32_t other
        cdef RingHeader *h
        cdef int32_t pid = getpid()
        owner = memoryview(mm)
        h = _map(owner, mm, &data)
        # Claim the single reader slot; a dead previous reader's slot is taken over.
        while True:
            other = ap_load_acquire_i32(&h.reader_pid)
            if other == pid:
                owner.release()
                raise RingError(f"{path}: this process already has a reader attached")
            if other > 0 and ap_process_alive(other, h.reader_start):
                owner.release()
                raise RingError(f"{path}: ring already has a reader (pid {other}); "
                                "a ring is single-consumer, create one ring per reader")
            if ap_cas_i32(&h.reader_pid, other, pid):
                break
        h.reader_start = ap_process_start(pid)
        # Only now: __dealloc__ frees the slot through _hdr, so it must be ours.
        self._hdr = h
        self._pid = pid
        self._mm = mm
        self._buffer_owner = owner
        self._view = owner.toreadonly()
        self._data = data
        self.path = path
        self._cap = self._hdr.capacity
        self._mask = self._cap - 1
        self._max_record = self._hdr.max_record
        self._tail = ap_load_acquire_u64(&self._hdr.tail)
        self._head_cache = self._tail
        self._next_pos = self._tail
        self._writer_pid = self._hdr.writer_pid
        self._writer_start = self._hdr.writer_start
        self._spin_ns = spin_ns
        self._next_check = 0

    def __dealloc__(self):
        # Only in the reader's own process: a forked child's copy must not free the slot.
        if self._hdr != NULL and self._pid == getpid():
            ap_cas_i32(&self._hdr.reader_pid, self._pid, 0)
        self._hdr = NULL

    cdef int _check_open(self) except -1:
        if self._hdr == NULL:
            raise ValueError(f"ring reader {self.path} is closed")
        return 0

    cdef void _consume(self) noexcept:
        self._tail = self._next_pos
        ap_store_release_u64(&self._hdr.tail, self._tail)

    cdef int _peek(self, bint quiet, const unsigned char **out, uint64_t *outlen) except -2:
        """Locate the next record without consuming it: 1 found (``out``/``outlen`` set,
        ``_next_pos`` is where it ends), 0 empty.  Consumes PAD words; consumes an overrun
        notice and raises RingOverrun, or (``quiet``) returns 2 and leaves it in place.
        Raises ProducerGone when empty and the writer is gone, unless ``quiet``."""
        cdef uint64_t pos, off, word, length, frame, kind
        cdef int r
        while True:
            pos = self._tail
            if pos == self._head_cache:
                self._head_cache = ap_load_acquire_u64(&self._hdr.head)
                if pos == self._head_cache:
                    if quiet:
                        return 0
                    r = self._empty()
                    if r == 0:
                        return 0
                    continue
                if self._head_cache - pos > self._cap or self._head_cache & 7:
                    raise RingFormatError(f"{self.path}: corrupt head {self._head_cache} (tail {pos})")
            off = pos & self._mask
            word = (<uint64_t *>(self._data + off))[0]
            kind = word >> 32
            length = word & 0xFFFFFFFFULL
            if kind == KIND_DATA:
                frame = _frame(length)
                if length == 0 or length > self._max_record or off + frame > self._cap \
                        or frame > self._head_cache - pos:
                    raise RingFormatError(f"{self.path}: corrupt record of length {length} at {pos}")
                out[0] = self._data + off + FRAME_HEADER
                outlen[0] = length
                self._next_pos = pos + frame
                return 1
            elif kind == KIND_PAD:
                if self._cap - off > self._head_cache - pos:
                    raise RingFormatError(f"{self.path}: corrupt padding at {pos}")
                self._next_pos = pos + (self._cap - off)
                self._consume()
            elif kind == KIND_NOTICE:
                if length != 8 or off + NOTICE_FRAME > self._cap or NOTICE_FRAME > self._head_cache - pos:
                    raise RingFormatError(f"{self.path}: corrupt overrun notice at {pos}")
                if quiet:
                    return 2
                missed = (<uint64_t *>(self._data + off + 8))[0]
                self._next_pos = pos + NOTICE_FRAME
                self._consume()
                raise RingOverrun(missed)
            else:
                raise RingFormatError(f"{self.path}: corrupt frame word {word:#x} at {pos}")

    cdef int _empty(self) except -2:
        """The ring looked empty: 0 if it is and the writer may still write, -1 to look again
        (the writer published meanwhile); raises ProducerGone."""
        cdef int64_t now
        if ap_load_acquire_u32(&self._hdr.state) == STATE_CLOSED:
            # close() stores state after its last head store, so this head is final.
            self._head_cache = ap_load_acquire_u64(&self._hdr.head)
            if self._head_cache != self._tail:
                return -1
            self._writer_closed = True
            raise ProducerGone(f"{self.path}: writer pid {self._writer_pid} closed the ring")
        if self._writer_dead:
            raise ProducerGone(f"{self.path}: writer pid {self._writer_pid} died")
        now = ap_coarse_ns()
        if now < self._next_check:
            return 0
        self._next_check = now + LIVENESS_NS
        if ap_process_alive(self._writer_pid, self._writer_start):
            return 0
        self._head_cache = ap_load_acquire_u64(&self._hdr.head)
        if self._head_cache != self._tail:
            return -1
        self._writer_dead = True
        raise ProducerGone(f"{self.path}: writer pid {self._writer_pid} died")

    def read(self):
        """Next record as bytes, or None when the ring is empty."""
        cdef const unsigned char *p
        cdef uint64_t n
        if self._hdr == NULL:
            self._check_open()
        if self._peek(False, &p, &n):
            rec = PyBytes_FromStringAndSize(<const char *>p, n)
            self._consume()
            return rec
        return None

    def read_many(self, Py_ssize_t max_records=1024) -> list:
        """Up to ``max_records`` records as a list (maybe empty).

        Stops before an overrun notice or the end of the stream once it holds records; the
        next call raises RingOverrun / ProducerGone, as ``read`` would."""
        cdef const unsigned char *p
        cdef uint64_t n
        cdef Py_ssize_t i
        cdef list out = []
        self._check_open()
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        try:
            for i in range(max_records):
                if self._peek(i > 0, &p, &n) != 1:
                    break
                PyList_Append(out, PyBytes_FromStringAndSize(<const char *>p, n))
                # Advance privately; tail is published once below, so a writer polling a
                # full ring sees one store per batch instead of one per record.
                self._tail = self._next_pos
        finally:
            ap_store_release_u64(&self._hdr.tail, self._tail)
        return out

    def read_into(self, buffer) -> int:
        """Copy the next record into the writable ``buffer``; return its length, 0 if empty.

        A record longer than the buffer raises ValueError and stays in the ring."""
        cdef const unsigned char *p
        cdef uint64_t n
        cdef Py_buffer view
        self._check_open()
        PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
        try:
            if not self._peek(False, &p, &n):
                return 0
            if <uint64_t>view.len < n:
                raise ValueError(f"record of {n} bytes does not fit a buffer of {view.len}")
            memcpy(view.buf, p, n)
            self._consume()
            return n
        finally:
            PyBuffer_Release(&view)

    def read_many_into(self, buffer, int64_t[::1] lengths) -> int:
        """Copy up to ``len(lengths)`` records back to back into the writable ``buffer`` and
        their lengths into ``lengths`` (an int64 array, e.g. ``numpy.empty(n, "int64")``).

        Returns how many were copied (0 when empty).  Stops early where the next record does
        not fit the buffer (it stays in the ring; with an empty result a record longer than
        the whole buffer raises ValueError) and before an overrun notice or the end of the
        stream once it holds records, like ``read_many``.  Nothing is allocated per record."""
        cdef const unsigned char *p
        cdef uint64_t n, used = 0
        cdef Py_ssize_t count = 0, cap_records = lengths.shape[0]
        cdef Py_buffer view
        self._check_open()
        PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
        try:
            while count < cap_records:
                if self._peek(count > 0, &p, &n) != 1:
                    break
                if used + n > <uint64_t>view.len:
                    if count == 0:
                        raise ValueError(f"record of {n} bytes does not fit a buffer of {view.len}")
                    break
                memcpy(<unsigned char *>view.buf + used, p, n)
                lengths[count] = <int64_t>n
                used += n
                count += 1
                self._tail = self._next_pos
        finally:
            ap_store_release_u64(&self._hdr.tail, self._tail)
            PyBuffer_Release(&view)
        return count

    def read_view(self):
        """Zero-copy: the next record as a read-only memoryview into the ring, or None.

        The view stays valid until ``advance()``; after that the writer may overwrite it.
        Calling ``read_view`` again before ``advance`` returns the same record.  ``close``
        refuses while views are alive."""
        cdef const unsigned char *p
        cdef uint64_t n
        cdef Py_ssize_t start
        self._check_open()
        if not self._peek(False, &p, &n):
            return None
        start = <Py_ssize_t>(p - <const unsigned char *>self._hdr)
        return self._view[start:start + <Py_ssize_t>n]

    def advance(self) -> None:
        """Release the record returned by the last ``read_view`` to the writer."""
        self._check_open()
        if self._next_pos != self._tail:
            self._consume()

    cdef bint _ready(self) noexcept nogil:
        return (ap_load_acquire_u64(&self._hdr.head) != self._tail
                or ap_load_acquire_u32(&self._hdr.state) == STATE_CLOSED)

    cdef int _wait(self, bint forever, int64_t timeout_ns, int64_t spin) except -1:
        """1 when ``read`` would not return None, 0 on timeout / close (see ``wait``)."""
        cdef int64_t now, deadline, spin_until, slice_ns
        cdef uint64_t head
        cdef bint ready = False, first = True
        cdef unsigned int polls
        if self._head_cache != self._tail or self._writer_dead or self._writer_closed or self._ready():
            return 1
        now = ap_monotonic_ns()
        deadline = now + (timeout_ns if timeout_ns > 0 else 0)
        self._busy += 1
        try:
            if spin > 0:
                # The spin keeps the GIL: releasing and re-taking it would add ~100 ns to the
                # latency we spin for, and a spin is short (default 50 us, far below the
                # interpreter's 5 ms switch interval).  The clock is read every 16 polls.
                spin_until = now + spin
                if not forever and deadline < spin_until:
                    spin_until = deadline
                polls = 0
                while True:
                    if self._ready():
                        return 1
                    ap_cpu_relax()
                    polls += 1
                    if (polls & 15) == 0 and ap_monotonic_ns() >= spin_until:
                        break
            while True:
                now = ap_monotonic_ns()
                if self._closing:
                    return 0
                if not forever and now >= deadline:
                    return self._ready()
                # The flag goes up once and stays up across slices (cleared in `finally`), so
                # the only moment a publish can miss it is this first transition, and the first
                # slice is short: that bounds the cost of the wake-up the writer's unfenced
                # publish can (in theory) miss just as we fall asleep (see ap_publish_head).
                slice_ns = FIRST_SLICE_NS if first else SLICE_NS
                if not forever and deadline - now < slice_ns:
                    slice_ns = deadline - now
                with nogil:
                    if first:
                        ap_store_seqcst_u32(&self._hdr.sleeping, 1)     # a full barrier
                    head = ap_load_seqcst_u64(&self._hdr.head)
                    if head == self._tail and ap_load_acquire_u32(&self._hdr.state) != STATE_CLOSED:
                        ap_futex_wait(ap_futex_word(&self._hdr.head), <uint32_t>head, slice_ns)
                    ready = self._ready()
                first = False
                if ready:
                    return 1
                PyErr_CheckSignals()
                if not ap_process_alive(self._writer_pid, self._writer_start):
                    self._next_check = 0        # let the next read() confirm and raise
                    return 1
        finally:
            if not first:
                ap_store_release_u32(&self._hdr.sleeping, 0)
            self._busy -= 1

    def wait(self, timeout=None, spin_ns=None) -> bool:
        """Block until ``read`` would not return None (a record, an overrun notice, or the end
        of the stream), for at most ``timeout`` seconds (None: no limit).  Returns False on
        timeout (or when another thread closes the reader).  Spins ``spin_ns`` (default: the
        reader's setting) and then sleeps on a futex in slices of 50 ms, checking the writer's
        liveness between slices, so a SIGKILLed writer is noticed.  Releases the GIL."""
        self._check_open()
        return self._wait(timeout is None, 0 if timeout is None else <int64_t>(float(timeout) * 1e9),
                          self._spin_ns if spin_ns is None else spin_ns) == 1

    cdef object _read(self):
        cdef const unsigned char *p
        cdef uint64_t n
        if self._peek(False, &p, &n):
            rec = PyBytes_FromStringAndSize(<const char *>p, n)
            self._consume()
            return rec
        return None

    def read_blocking(self, timeout=None):
        """Next record, waiting up to ``timeout`` seconds (None: forever); None on timeout."""
        cdef int64_t deadline = 0, left = 0
        cdef bint forever = timeout is None
        self._check_open()
        rec = self._read()
        if rec is not None:
            return rec
        if not forever:
            deadline = ap_monotonic_ns() + <int64_t>(float(timeout) * 1e9)
        while True:
            if not forever:
                left = deadline - ap_monotonic_ns()
            if not self._wait(forever, left, self._spin_ns):
                self._check_open()
                return self._read()
            self._check_open()
            rec = self._read()
            if rec is not None:
                return rec
            if not forever and ap_monotonic_ns() >= deadline:
                return None

    def __iter__(self):
        return self

    def __next__(self):
        """Blocking iteration; ends when the writer closes cleanly, raises ProducerGone if it
        died and RingOverrun where records were dropped (iterate again to continue)."""
        try:
            return self.read_blocking(None)
        except ProducerGone:
            if self._writer_closed:
                raise StopIteration
            raise

    def close(self) -> None:
        """Detach: free the reader slot and unmap.  Raises BufferError while views from
        ``read_view`` are alive (as ``mmap.close`` does).  Idempotent."""
        if self._hdr == NULL:
            return
        if self._busy:
            # Another thread is inside wait(): wake it and let it leave before unmapping.
            self._closing = True
            while self._busy:
                ap_futex_wake(ap_futex_word(&self._hdr.head))
                with nogil:
                    usleep(1000)
            self._closing = False
        self._view.release()
        self._buffer_owner.release()
        # Free the slot while the header is still mapped; take it back if unmapping fails.
        mine = self._pid == getpid()
        if mine:
            ap_cas_i32(&self._hdr.reader_pid, self._pid, 0)
        try:
            self._mm.close()
        except BufferError:
            if mine:
                ap_cas_i32(&self._hdr.reader_pid, 0, self._pid)
            self._buffer_owner = memoryview(self._mm)
            self._view = self._buffer_owner.toreadonly()
            raise BufferError(f"{self.path}: close() while zero-copy views from read_view() "
                              "are alive; release them first") from None
        self._hdr = NULL
        self._data = NULL
        self._view = None
        self._buffer_owner = None
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
        return self._cap

    @property
    def max_record(self) -> int:
        return self._max_record

    @property
    def policy(self) -> str:
        self._check_open()
        return "drop" if self._hdr.policy == POLICY_DROP else "lossless"

    @property
    def generation(self) -> int:
        """Incremented each time a ring file is re-created over a dead writer's file."""
        self._check_open()
        return self._hdr.generation

    @property
    def writer_pid(self) -> int:
        return self._writer_pid

    @property
    def writer_closed(self) -> bool:
        """True once the writer closed the ring cleanly (as opposed to dying)."""
        self._check_open()
        return self._writer_closed or ap_load_acquire_u32(&self._hdr.state) == STATE_CLOSED

    @property
    def writer_alive(self) -> bool:
        """True while the writer has not closed the ring and its process (pid + start time)
        still runs."""
        self._check_open()
        return (ap_load_acquire_u32(&self._hdr.state) != STATE_CLOSED
                and bool(ap_process_alive(self._writer_pid, self._writer_start)))

    @property
    def dropped(self) -> int:
        """The writer's running count of dropped records (drop policy)."""
        self._check_open()
        return ap_load_relaxed_u64(&self._hdr.dropped)

    @property
    def backlog(self) -> int:
        """Bytes published and not yet consumed (framing included)."""
        self._check_open()
        return ap_load_acquire_u64(&self._hdr.head) - self._tail

    @property
    def spin_ns(self) -> int:
        return self._spin_ns

    @spin_ns.setter
    def spin_ns(self, int64_t value):
        self._spin_ns = max(value, 0)
