# cython: boundscheck=False, wraparound=False, initializedcheck=False, always_allow_keywords=False
"""Lock-free single-producer / single-consumer ring over a shared file mapping (the compiled
core behind ``alphapulse.ring``).

The writer frames each record (8-byte length word + payload padded to 8 bytes), copies it into
the data region and then publishes it with one release store of ``head``; the reader acquires
``head``, copies or lends the bytes and releases ``tail``.  Each side keeps a private copy of
the other's counter and reloads it only when that copy says "full" / "empty", so in steady
state each side touches only its own cache line plus the data.

``write_many`` frames a whole batch and stores ``head`` once, so the reader is not dragged
into lock-step with the writer (one shared-line transfer per batch, not per record); likewise
``read_many`` publishes ``tail`` once per batch.

Waiting readers spin briefly (holding the GIL) and then sleep on a futex over ``head``.  The
writer calls futex-wake only when the reader has raised its ``sleeping`` flag, so the publish
path makes no syscall, and it publishes with a plain release store, no fence (see
``ap_publish_head`` in _atomics.h for why a lost wake-up is bounded by a 2 ms first slice).
Sleeps are cut into 50 ms slices so a writer killed with SIGKILL (which wakes nobody) is noticed
through its pid and start time (a recycled pid or a zombie counts as dead) within a slice.

Nothing read from the file is trusted: the header is validated before any offset derived from
it is used, and every frame word is bounds-checked against the region and the published head
before the bytes it describes are touched, so a corrupt file raises RingFormatError.

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
cdef int64_t FIRST_SLICE_NS = 2_000_000     # first slice of each wait: bounds a lost wake-up
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


include "_ring_writer.pxi"
include "_ring_reader.pxi"
