# cython: boundscheck=False, wraparound=False, initializedcheck=False, always_allow_keywords=False
"""Lock-free single-producer / single-consumer ring over a shared file mapping (the compiled
core behind ``alphapulse.ring``).

The writer frames each record (8-byte length word + payload padded to 8 bytes), copies it into
the data region and then publishes it with one release store of ``head``; the reader acquires
``head``, copies or lends the bytes and releases ``tail``.  Each side keeps a private copy of
the other's counter and reloads it only when that copy says "full" / "empty", so in steady
state each side touches only its own cache line plus the data.

Waiting readers spin briefly and then sleep on a futex over ``head``.  The writer calls
futex-wake only when the reader has raised its ``sleeping`` flag, so the publish path makes no
syscall.  Sleeps are cut into slices so a writer killed with SIGKILL (which wakes nobody) is
noticed through its pid and start time within a slice.

This module knows nothing about files, paths or asyncio: ``alphapulse.ring`` creates, maps and
validates files and hands the mapping here.  No asyncio and no other package module: only
``alphapulse.errors``.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_Append
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from alphapulse.errors import ProducerGone, RingError, RingFormatError, RingOverrun

cdef extern from "Python.h":
    Py_buffer *PyMemoryView_GET_BUFFER(object mview)

cdef extern from "unistd.h" nogil:
    int getpid()
    int usleep(unsigned int usec)


MAGIC = 0x3130474E49525041          # b"APRING01" read as a little-endian integer
VERSION = LAYOUT_VERSION
HEADER_BYTES = HEADER_SIZE
MIN_CAPACITY = 1 << 12
MAX_CAPACITY = 1 << 31              # the futex sleeps on 32 bits of head; keep laps < 2**32
POLICIES = {"lossless": POLICY_LOSSLESS, "drop": POLICY_DROP}
DEFAULT_SPIN_NS = 50_000

cdef uint64_t C_MAGIC = 0x3130474E49525041ULL
cdef int64_t SLICE_NS = 50_000_000          # futex sleep slice: bounds writer-death detection
cdef int64_t LIVENESS_NS = 100_000_000      # at most one /proc probe per 100 ms on empty reads


def _layout_check():
    """Fail the import if the compiler laid the header out differently from the .pxd comment."""
    cdef RingHeader h
    cdef char *base = <char *>&h
    offsets = (<char *>&h.state - base, <char *>&h.head - base, <char *>&h.tail - base,
               <char *>&h.sleeping - base, sizeof(RingHeader))
    if offsets != (64, 128, 256, 384, HEADER_SIZE):
        raise ImportError(f"alphapulse._ring: unexpected header layout {offsets}")

_layout_check()


cdef inline uint64_t _frame(uint64_t n) noexcept nogil:
    return FRAME_HEADER + ((n + 7) & ~(<uint64_t>7))


cdef uint64_t _checksum(const unsigned char *p) noexcept nogil:
    """FNV-1a over the immutable identity fields (bytes 0..55)."""
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef int i
    for i in range(56):
        h ^= p[i]
        h *= 0x100000001B3ULL
    return h


def max_record_for(uint64_t capacity):
    """Largest record a ring of ``capacity`` bytes accepts.

    Half the region minus room for an overrun notice and padding, so that after any wrap a
    maximal record (preceded by a notice) still fits once the reader has caught up."""
    return capacity // 2 - 32


def process_start(int pid):
    """Start time of ``pid`` in clock ticks since boot; 0 if absent or a zombie."""
    return ap_process_start(pid)


def process_alive(int pid, uint64_t start):
    """True while ``pid`` runs and (when ``start`` is non-zero) has that start time."""
    return bool(ap_process_alive(pid, start))


cdef inline RingHeader *_header_of(object mv) except NULL:
    cdef Py_buffer *b = PyMemoryView_GET_BUFFER(mv)
    if b.len < HEADER_SIZE:
        raise RingFormatError(f"ring mapping of {b.len} bytes is smaller than its {HEADER_SIZE}-byte header")
    return <RingHeader *>b.buf


def init_header(object buffer, uint64_t capacity, str policy, int writer_pid,
                uint64_t writer_start, uint64_t generation, uint64_t created_ns):
    """Write a fresh header (state LIVE, counters 0) into the writable ``buffer``."""
    cdef Py_buffer view
    if capacity < MIN_CAPACITY or capacity > MAX_CAPACITY or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two in [{MIN_CAPACITY}, {MAX_CAPACITY}], got {capacity}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be 'lossless' or 'drop', got {policy!r}")
    PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
    try:
        if <uint64_t>view.len < HEADER_SIZE + capacity:
            raise ValueError(f"buffer of {view.len} bytes cannot hold a ring of capacity {capacity}")
        memset(view.buf, 0, HEADER_SIZE)
        h = <RingHeader *>view.buf
        h.magic = C_MAGIC
        h.version = LAYOUT_VERSION
        h.header_size = HEADER_SIZE
        h.capacity = capacity
        h.max_record = capacity // 2 - 32
        h.policy = POLICIES[policy]
        h.writer_pid = writer_pid
        h.writer_start = writer_start
        h.generation = generation
        h.checksum = _checksum(<const unsigned char *>view.buf)
        h.created_ns = created_ns
        ap_store_release_u32(&h.state, STATE_LIVE)
    finally:
        PyBuffer_Release(&view)


def identity(object buffer):
    """(writer_pid, writer_start, generation, state) of anything carrying our magic, any
    version, or None.  Used to decide whether an existing file is a stale ring that may be
    replaced (these fields keep their offsets across layout versions)."""
    cdef Py_buffer view
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    try:
        if view.len < 68:
            return None
        h = <RingHeader *>view.buf
        if h.magic != C_MAGIC:
            return None
        return (h.writer_pid, h.writer_start, h.generation, ap_load_acquire_u32(&h.state))
    finally:
        PyBuffer_Release(&view)


def read_header(object buffer, Py_ssize_t file_size):
    """Validate a header (at least its first 512 bytes) of a file of ``file_size`` bytes.

    Returns the fields as a dict; raises RingFormatError naming the first bad field.  Nothing
    is trusted before it is checked, so no later offset computation can leave the mapping."""
    cdef Py_buffer view
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    try:
        if file_size < HEADER_SIZE or view.len < HEADER_SIZE:
            raise RingFormatError(f"truncated: {min(file_size, view.len)} bytes, "
                                  f"a ring header alone needs {HEADER_SIZE}")
        h = <RingHeader *>view.buf
        if h.magic != C_MAGIC:
            raise RingFormatError("not a ring file (bad magic)")
        if h.version != LAYOUT_VERSION:
            raise RingFormatError(f"ring layout version {h.version}, this build reads {LAYOUT_VERSION}")
        if h.header_size != HEADER_SIZE:
            raise RingFormatError(f"corrupt header: header_size {h.header_size} != {HEADER_SIZE}")
        if h.checksum != _checksum(<const unsigned char *>view.buf):
            raise RingFormatError("corrupt header: identity checksum mismatch")
        cap = h.capacity
        if cap < MIN_CAPACITY or cap > MAX_CAPACITY or cap & (cap - 1):
            raise RingFormatError(f"corrupt header: capacity {cap} is not a power of two "
                                  f"in [{MIN_CAPACITY}, {MAX_CAPACITY}]")
        if h.max_record != cap // 2 - 32:
            raise RingFormatError(f"corrupt header: max_record {h.max_record}")
        if h.policy not in (POLICY_LOSSLESS, POLICY_DROP):
            raise RingFormatError(f"corrupt header: policy {h.policy}")
        if file_size != HEADER_SIZE + cap:
            raise RingFormatError(f"truncated or padded: {file_size} bytes, a ring of capacity "
                                  f"{cap} has {HEADER_SIZE + cap}")
        state = ap_load_acquire_u32(&h.state)
        if state not in (STATE_INIT, STATE_LIVE, STATE_CLOSED):
            raise RingFormatError(f"corrupt header: state {state}")
        head = ap_load_acquire_u64(&h.head)
        tail = ap_load_acquire_u64(&h.tail)
        # Read concurrently with a live writer, head may run ahead of a tail loaded earlier;
        # only values no correct writer can produce are corrupt.
        if head & 7 or tail & 7 or tail > head or head - tail > 2 * cap:
            raise RingFormatError(f"corrupt header: head {head}, tail {tail}")
        return {
            "version": h.version, "capacity": cap, "max_record": h.max_record,
            "policy": "drop" if h.policy == POLICY_DROP else "lossless",
            "writer_pid": h.writer_pid, "writer_start": h.writer_start,
            "generation": h.generation, "state": state,
            "reader_pid": ap_load_acquire_i32(&h.reader_pid), "reader_start": h.reader_start,
            "created_ns": h.created_ns, "head": head, "tail": tail, "dropped": h.dropped,
        }
    finally:
        PyBuffer_Release(&view)


cdef RingHeader *_map(object owner, object mm, unsigned char **data) except NULL:
    """Pointer to a validated mapping held through the memoryview ``owner``."""
    cdef Py_buffer *b = PyMemoryView_GET_BUFFER(owner)
    read_header(owner, b.len)
    h = <RingHeader *>b.buf
    data[0] = <unsigned char *>b.buf + HEADER_SIZE
    return h


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
        if self._hdr != NULL:
            ap_store_release_u32(&self._hdr.state, STATE_CLOSED)
            ap_futex_wake(ap_futex_word(&self._hdr.head))
            self._hdr = NULL

    cdef int _check_open(self) except -1:
        if self._hdr == NULL:
            raise ValueError(f"ring writer {self.path} is closed")
        return 0

    cdef void _publish(self) noexcept nogil:
        # seq_cst store, then load the flag: see the Dekker note in _atomics.h.
        ap_store_seqcst_u64(&self._hdr.head, self._head)
        if ap_load_seqcst_u32(&self._hdr.sleeping):
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
        if self._hdr != NULL:
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
        cdef bint ready = False
        if self._head_cache != self._tail or self._writer_dead or self._writer_closed or self._ready():
            return 1
        now = ap_monotonic_ns()
        deadline = now + (timeout_ns if timeout_ns > 0 else 0)
        self._busy += 1
        try:
            if spin > 0:
                spin_until = now + spin
                if not forever and deadline < spin_until:
                    spin_until = deadline
                with nogil:
                    while True:
                        if self._ready():
                            ready = True
                            break
                        ap_cpu_relax()
                        if ap_monotonic_ns() >= spin_until:
                            break
                if ready:
                    return 1
            while True:
                now = ap_monotonic_ns()
                if self._closing:
                    return 0
                if not forever and now >= deadline:
                    return self._ready()
                slice_ns = SLICE_NS if forever or deadline - now > SLICE_NS else deadline - now
                with nogil:
                    # Dekker with the writer's _publish: flag first, then look at head once more.
                    ap_store_seqcst_u32(&self._hdr.sleeping, 1)
                    head = ap_load_seqcst_u64(&self._hdr.head)
                    if head == self._tail and ap_load_acquire_u32(&self._hdr.state) != STATE_CLOSED:
                        ap_futex_wait(ap_futex_word(&self._hdr.head), <uint32_t>head, slice_ns)
                    ap_store_release_u32(&self._hdr.sleeping, 0)
                    ready = self._ready()
                if ready:
                    return 1
                PyErr_CheckSignals()
                if not ap_process_alive(self._writer_pid, self._writer_start):
                    self._next_check = 0        # let the next read() confirm and raise
                    return 1
        finally:
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
        ap_cas_i32(&self._hdr.reader_pid, self._pid, 0)
        try:
            self._mm.close()
        except BufferError:
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
