# Included by _book.pyx: decimal text in and out, sides, argument checks.

# --- text in, text out ---------------------------------------------------------------------

cdef inline str _ascii(const char *buf, Py_ssize_t n):
    """A new str from ASCII bytes without a UTF-8 decode pass."""
    cdef object s = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(s), buf, <size_t>n)
    return <str>s


cdef inline str _fmt(int64_t v, int precision):
    cdef char buf[AP_DEC_BUFSIZE]
    cdef int n = ap_format_decimal(v, precision, buf)
    return _ascii(buf, n)


cdef str _where(Py_ssize_t index):
    return f"changes[{index}]: " if index >= 0 else ""


cdef int _raise_decimal(int rc, object value, int precision, str field,
                        Py_ssize_t index) except -1:
    cdef str where = _where(index)
    if rc == AP_DEC_NEGATIVE:
        raise BookError(f"{where}{field} {value!r} is negative", field)
    if rc == AP_DEC_NONFINITE:
        raise BookError(f"{where}{field} {value!r} is not finite", field)
    if rc == AP_DEC_PRECISION:
        raise BookError(f"{where}{field} {value!r} has non-zero digits beyond "
                        f"precision {precision}", field)
    if rc == AP_DEC_RANGE:
        raise BookError(f"{where}{field} {value!r} is out of range at precision {precision}",
                        field)
    raise BookError(f"{where}{field} {value!r} is not a decimal number", field)


cdef int64_t _parse_slow(object o, int precision, str field, Py_ssize_t index) except -1:
    """Numbers that are not str/bytes: ints exactly, floats through their shortest repr (so a
    JSON number parsed to float reproduces its text, and anything finer than the precision is
    rejected rather than rounded), Decimals through str, buffers as bytes."""
    cdef object text
    if isinstance(o, bool) or o is None:
        raise BookError(f"{_where(index)}{field} {o!r} is not a decimal number", field)
    if isinstance(o, int):
        if o < 0:
            raise BookError(f"{_where(index)}{field} {o!r} is negative", field)
        if precision > 18 or o > INT64_MAX // POW10[precision]:
            raise BookError(f"{_where(index)}{field} {o!r} is out of range at precision "
                            f"{precision}", field)
        return <int64_t>o * POW10[precision]
    if isinstance(o, float):
        text = repr(o)
    elif isinstance(o, str):
        text = str(o)   # a str subclass
        if not (<str>text).isascii():
            raise BookError(f"{_where(index)}{field} {o!r} is not a decimal number", field)
    elif isinstance(o, (bytearray, memoryview)):
        text = bytes(o)
    elif type(o).__name__ == "Decimal":
        text = str(o)
    else:
        raise BookError(f"{_where(index)}{field} {o!r} is not a decimal number", field)
    cdef int64_t v = 0
    cdef int rc
    if isinstance(text, bytes):
        rc = ap_parse_decimal(PyBytes_AS_STRING(text), <size_t>PyBytes_GET_SIZE(text),
                              precision, &v)
    else:
        rc = ap_parse_decimal(<const char *>PyUnicode_DATA(text),
                              <size_t>PyUnicode_GET_LENGTH(text), precision, &v)
    if rc != AP_DEC_OK:
        _raise_decimal(rc, o, precision, field, index)
    return v


cdef inline int64_t _parse(object o, int precision, str field, Py_ssize_t index) except -1:
    """Decimal text -> scaled int64 (>= 0), or BookError naming the field."""
    cdef int64_t v = 0
    cdef int rc
    if type(o) is str and PyUnicode_IS_COMPACT_ASCII(o):
        rc = ap_parse_decimal(<const char *>PyUnicode_DATA(o), <size_t>PyUnicode_GET_LENGTH(o),
                              precision, &v)
    elif type(o) is bytes:
        rc = ap_parse_decimal(PyBytes_AS_STRING(o), <size_t>PyBytes_GET_SIZE(o), precision, &v)
    else:
        return _parse_slow(o, precision, field, index)
    if rc != AP_DEC_OK:
        _raise_decimal(rc, o, precision, field, index)
    return v


cdef inline int64_t _parse_price(object o, int precision, Py_ssize_t index) except -1:
    cdef int64_t v = _parse(o, precision, "price", index)
    if v == 0:
        raise BookError(f"{_where(index)}price {o!r} must be positive", "price")
    return v


cdef inline bint _is(const char *p, Py_ssize_t n, const char *word, Py_ssize_t wn) noexcept:
    return n == wn and memcmp(p, word, <size_t>n) == 0


cdef int _parse_side(object o, Py_ssize_t index) except -1:
    """'bid'/'buy'/0 -> 0, 'ask'/'sell'/'offer'/1 -> 1."""
    cdef const char *p
    cdef Py_ssize_t n
    if o is S_BID:
        return 0
    if o is S_ASK:
        return 1
    if type(o) is str and PyUnicode_IS_COMPACT_ASCII(o):
        p = <const char *>PyUnicode_DATA(o)
        n = PyUnicode_GET_LENGTH(o)
    elif type(o) is bytes:
        p = PyBytes_AS_STRING(o)
        n = PyBytes_GET_SIZE(o)
    elif type(o) is int:
        if o == 0 or o == 1:
            return <int>o
        p = NULL
        n = 0
    else:
        p = NULL
        n = 0
    if p != NULL:
        if _is(p, n, b"bid", 3) or _is(p, n, b"buy", 3):
            return 0
        if _is(p, n, b"ask", 3) or _is(p, n, b"sell", 4) or _is(p, n, b"offer", 5):
            return 1
    raise BookError(f"{_where(index)}side {o!r} is not one of 'bid', 'ask', 'buy', 'sell', "
                    f"'offer', 0, 1", "side")


cdef int _check_precision(object value, str name) except -1:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 18:
        raise BookError(f"{name} must be an int in 0..18, not {value!r}", name)
    return 0



def parse_decimal(text, int precision):
    """Decimal text (str/bytes; also int, float via its shortest repr, Decimal) -> int scaled
    by ``10**precision``, exactly as the book parses prices and sizes.  Raises BookError
    (field ``"value"``) for negative, non-finite, non-numeric or off-precision input."""
    if not 0 <= precision <= 18:
        raise BookError(f"precision must be in 0..18, not {precision}", "precision")
    return _parse(text, precision, "value", -1)


def format_decimal(int64_t value, int precision):
    """Scaled int -> decimal string with exactly ``precision`` decimals (the book's output
    format); negative values get a leading '-'."""
    if not 0 <= precision <= 18:
        raise BookError(f"precision must be in 0..18, not {precision}", "precision")
    return _fmt(value, precision)
