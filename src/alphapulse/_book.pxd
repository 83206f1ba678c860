# The order book's C contract: the headers it is built on and the two classes' C layout, so
# other Cython modules could cimport the book and call its C-level methods without Python.
from libc.stdint cimport int64_t, uint64_t, uint32_t


cdef extern from "_decimal.h" nogil:
    enum:
        AP_DEC_OK
        AP_DEC_SYNTAX
        AP_DEC_NEGATIVE
        AP_DEC_PRECISION
        AP_DEC_RANGE
        AP_DEC_NONFINITE
        AP_MAX_PRECISION
        AP_DEC_BUFSIZE
    int ap_parse_decimal(const char *s, size_t n, int precision, int64_t *out)
    int ap_format_decimal(int64_t v, int precision, char *buf)
    int ap_format_digits(int64_t v, char *buf)


cdef extern from "_crc32.h" nogil:
    void ap_crc32_init()
    uint32_t ap_crc32(const char *data, size_t n)


cdef extern from "_checksum.h" nogil:
    enum:
        AP_CK_LEVELS
    ctypedef struct ap_ck_side:
        int n
    ctypedef struct ap_ck:
        ap_ck_side side[2]
    void ap_ck_init()
    void ap_ck_reset(ap_ck *ck)
    uint32_t ap_ck_checksum(ap_ck *ck, const int64_t *bk, const int64_t *bz, int nb,
                            const int64_t *ak, const int64_t *az, int na)


cdef extern from "_levels.h" nogil:
    ctypedef struct ap_chunk:
        int64_t keys[1]
        int64_t sizes[1]
    ctypedef struct ap_side:
        ap_chunk **ch
        int64_t *maxkey
        int *len
        Py_ssize_t nch, cap, count
    Py_ssize_t ap_side_count(const ap_side *s)
    void ap_side_free(ap_side *s)
    int ap_side_reserve(ap_side *s, Py_ssize_t extra)
    void ap_pool_trim()
    int ap_side_set(ap_side *s, int64_t key, int64_t size)
    int64_t ap_side_get(const ap_side *s, int64_t key)
    int ap_side_best(const ap_side *s, int64_t *key, int64_t *size)
    Py_ssize_t ap_side_top(const ap_side *s, Py_ssize_t n, int64_t *keys, int64_t *sizes)
    int ap_side_assign(ap_side *s, const int64_t *keys, const int64_t *sizes, Py_ssize_t n)
    Py_ssize_t ap_side_truncate(ap_side *s, Py_ssize_t depth, int64_t *dropped)
    Py_ssize_t ap_side_nbytes(const ap_side *s)


cdef extern from "_varint.h" nogil:
    enum:
        AP_VARINT_MAX
        AP_PRICE_TZBITS
        AP_SIZE_TZBITS
    uint64_t ap_zigzag(int64_t v)
    int64_t ap_unzigzag(uint64_t u)
    size_t ap_put_uvarint(unsigned char *p, uint64_t v)
    size_t ap_get_uvarint(const unsigned char *p, size_t length, uint64_t *out)
    void ap_split_tz(uint64_t v, unsigned max_tz, uint64_t *mantissa, unsigned *tz)
    size_t ap_put_number(unsigned char *p, uint64_t mantissa, unsigned tz, unsigned tzbits)
    size_t ap_get_number(const unsigned char *p, size_t length, unsigned tzbits,
                         uint64_t *mantissa, unsigned *tz)
    int ap_scale_signed(int64_t mantissa, unsigned tz, int64_t *out)


# One parsed change: side 0 = bid, 1 = ask; price/size scaled.
ctypedef struct ap_change:
    int64_t price
    int64_t size
    int side


cdef class Delta:
    cdef readonly int64_t sequence
    cdef readonly bint is_snapshot
    cdef readonly str exchange
    cdef readonly str symbol
    cdef readonly int price_precision
    cdef readonly int size_precision
    # Bid changes are [0, n_bids), ask changes [n_bids, n); each side in application order.
    cdef Py_ssize_t n
    cdef Py_ssize_t n_bids
    cdef int64_t *prices
    cdef int64_t *sizes
    cdef int64_t _inline[8]   # storage for up to 4 changes (no malloc for most updates)

    cdef int _alloc(self, Py_ssize_t n) except -1
    cdef Py_ssize_t _encoded_max(self) except -1
    cdef Py_ssize_t _encode_into(self, unsigned char *p) except -1


cdef class OrderBook:
    cdef ap_side side[2]
    cdef readonly str exchange
    cdef readonly str symbol
    cdef readonly int price_precision
    cdef readonly int size_precision
    cdef readonly Py_ssize_t depth
    cdef public int64_t sequence
    # Reused parse buffer for batches (grows, never shrinks below what a batch needed).
    cdef ap_change *scratch
    cdef Py_ssize_t scratch_cap
    # Memo of the last Kraken checksum's top 10 levels, text and CRC states (_checksum.h).
    cdef ap_ck ck

    cdef int _reserve_scratch(self, Py_ssize_t n) except -1
    cdef void _trim_scratch(self) noexcept
    cdef Py_ssize_t _parse_changes(self, object changes) except -1
    cdef Delta _apply_parsed(self, Py_ssize_t count, bint want_delta)
    cdef Delta _apply_scratch(self, Py_ssize_t count)
    cdef int _apply_delta(self, Delta delta) except -1
    cdef uint32_t _checksum10(self) noexcept
    cdef Delta _new_delta(self, Py_ssize_t capacity, bint snapshot)
    cdef int _replace(self, ap_change *levels, Py_ssize_t n_bids, Py_ssize_t n_asks) except -1
