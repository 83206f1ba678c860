# The ring's C contract: the shared header layout, the record framing constants, the atomics
# it is built on, and the two classes' C layout (so another Cython module could cimport them).
#
# File layout (all integers native-endian; every ring on a machine is read by that machine):
#
#   offset  line  field            written by
#   0       0     magic .. checksum  creator, once (immutable; checksum covers bytes 0..55)
#   64      1     state, reader id   creator / close (state), reader (CAS on reader_pid)
#   128     2     head, dropped      writer, every publication
#   256     4     tail               reader, every consumption
#   384     6     sleeping           reader, only when it goes to sleep on the futex
#   512           data region        `capacity` bytes, a power of two
#
# head and tail are free-running byte counters (never wrapped); position in the data region is
# `counter & (capacity - 1)`.  head and tail sit two cache lines apart so the adjacent-line
# prefetcher does not couple them either.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


cdef extern from "_atomics.h" nogil:
    uint64_t AP_START_UNKNOWN
    uint64_t ap_load_acquire_u64(const uint64_t *p)
    uint64_t ap_load_relaxed_u64(const uint64_t *p)
    void ap_store_release_u64(uint64_t *p, uint64_t v)
    void ap_store_relaxed_u64(uint64_t *p, uint64_t v)
    uint32_t ap_load_acquire_u32(const uint32_t *p)
    void ap_store_release_u32(uint32_t *p, uint32_t v)
    int32_t ap_load_acquire_i32(const int32_t *p)
    void ap_store_release_i32(int32_t *p, int32_t v)
    int ap_cas_i32(int32_t *p, int32_t expected, int32_t desired)
    void ap_store_seqcst_u64(uint64_t *p, uint64_t v)
    void ap_store_seqcst_u32(uint32_t *p, uint32_t v)
    uint32_t ap_load_seqcst_u32(const uint32_t *p)
    uint64_t ap_load_seqcst_u64(const uint64_t *p)
    int ap_publish_head(uint64_t *head, uint64_t v, const uint32_t *sleeping)
    void ap_cpu_relax()
    uint32_t *ap_futex_word(uint64_t *head)
    int ap_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
    void ap_futex_wake(uint32_t *word)
    int64_t ap_monotonic_ns()
    int64_t ap_coarse_ns()
    uint64_t ap_process_start(int32_t pid)
    int ap_process_alive(int32_t pid, uint64_t start)


cdef struct RingHeader:
    # line 0: identity, immutable after creation
    uint64_t magic
    uint32_t version
    uint32_t header_size
    uint64_t capacity
    uint64_t max_record
    uint32_t policy
    int32_t writer_pid
    uint64_t writer_start
    uint64_t generation
    uint64_t checksum
    # line 1: lifecycle and the reader's identity
    uint32_t state
    int32_t reader_pid
    uint64_t reader_start
    uint64_t created_ns
    uint8_t _pad1[40]
    # lines 2-3: the writer's hot word
    uint64_t head
    uint64_t dropped
    uint8_t _pad2[112]
    # lines 4-5: the reader's hot word
    uint64_t tail
    uint8_t _pad3[120]
    # lines 6-7: the reader's sleep flag, read by the writer after each publication
    uint32_t sleeping
    uint8_t _pad4[124]


cdef enum:
    HEADER_SIZE = 512
    LAYOUT_VERSION = 1
    # A record frame is an 8-byte word (length in the low 32 bits, kind tag in the high 32)
    # followed by the payload padded to 8 bytes.  Frames never wrap: a PAD word sends the reader
    # to the start of the region.  Kind tags are non-zero so zeroed memory reads as corrupt.
    KIND_DATA = 0xA1
    KIND_PAD = 0xB2
    KIND_NOTICE = 0xC3
    FRAME_HEADER = 8
    NOTICE_FRAME = 16
    STATE_INIT = 0
    STATE_LIVE = 1
    STATE_CLOSED = 2
    POLICY_LOSSLESS = 0
    POLICY_DROP = 1


cdef class Writer:
    cdef object _mm
    cdef object _buffer_owner
    cdef RingHeader *_hdr
    cdef unsigned char *_data
    cdef uint64_t _cap
    cdef uint64_t _mask
    cdef uint64_t _max_record
    cdef uint64_t _head
    cdef uint64_t _tail_cache
    cdef uint64_t _pending_missed
    cdef uint64_t _dropped
    cdef bint _drop
    cdef readonly str path
    cdef int _check_open(self) except -1
    cdef int _put(self, const unsigned char *src, Py_ssize_t n) except -1
    cdef void _publish(self) noexcept nogil
    cdef int _flush_notice(self) except -1


cdef class Reader:
    cdef object _mm
    cdef object _buffer_owner
    cdef object _view
    cdef RingHeader *_hdr
    cdef unsigned char *_data
    cdef uint64_t _cap
    cdef uint64_t _mask
    cdef uint64_t _max_record
    cdef uint64_t _tail
    cdef uint64_t _head_cache
    cdef uint64_t _next_pos
    cdef int32_t _writer_pid
    cdef uint64_t _writer_start
    cdef int32_t _pid
    cdef int64_t _next_check
    cdef int64_t _spin_ns
    cdef int _busy
    cdef bint _closing
    cdef bint _writer_closed
    cdef bint _writer_dead
    cdef readonly str path
    cdef int _check_open(self) except -1
    cdef int _peek(self, bint quiet, const unsigned char **out, uint64_t *outlen) except -2
    cdef int _empty(self) except -2
    cdef void _consume(self) noexcept
    cdef bint _ready(self) noexcept nogil
    cdef int _wait(self, bint forever, int64_t timeout_ns, int64_t spin) except -1
    cdef object _read(self)
