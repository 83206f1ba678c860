# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled record encoding for :mod:`alphapulse.wire`, which owns the format (its docstring has
the layout).  Every record the server publishes is built here in one piece: the 29-byte header,
the name block (cached per name triple) and the payload go into one buffer, then one ``bytes``.
Book records write the delta's binary form straight after the names (``Delta._encode_into``)
and trades their texts, with no intermediate objects; other records bring their payload.

No asyncio and no other package module but the book's C contract.
"""
from sys import byteorder as _byteorder

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint16_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from alphapulse._book cimport Delta

if _byteorder != "little":
    raise ImportError("alphapulse._wire writes little-endian integers with memcpy")


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object o, Py_ssize_t *size) except NULL
    bint PyUnicode_IS_ASCII(object o)


cdef enum:
    MAGIC = 0xA1
    HEADER = 29
    TRADE = 1
    STACK = 512


NAME_CACHE_MAX = 4096     # bounded: a hostile or buggy peer must not grow it without limit
# (exchange, symbol, native) -> the three length bytes, then the three names back to back
cdef dict _names = {}


cdef bytes _name_block(str exchange, str symbol, str native):
    key = (exchange, symbol, native)
    cdef object block = _names.get(key)
    if block is not None:
        return <bytes>block
    e, s, n = exchange.encode(), symbol.encode(), native.encode()
    if len(e) > 255 or len(s) > 255 or len(n) > 255:
        raise ValueError(f"exchange/symbol names longer than 255 bytes: {key!r}")
    if len(_names) >= NAME_CACHE_MAX:
        _names.clear()
    block = _names[key] = bytes((len(e), len(s), len(n))) + e + s + n
    return <bytes>block


def name_cache_sizes():
    """Name blocks cached by the encoder and by the decoder (each at most ``NAME_CACHE_MAX``)."""
    return len(_names), len(_decoded_names)


cdef inline Py_ssize_t _head(unsigned char *p, int kind, bytes block, int64_t ts_event,
                             int64_t ts_recv, int64_t ts_pub) noexcept:
    """Header and names at ``p``; returns where the payload starts."""
    cdef const unsigned char *b = <const unsigned char *>PyBytes_AS_STRING(block)
    cdef Py_ssize_t names = PyBytes_GET_SIZE(block) - 3
    p[0] = MAGIC
    p[1] = <unsigned char>kind
    p[2] = b[0]
    p[3] = b[1]
    p[4] = b[2]
    memcpy(p + 5, &ts_event, 8)
    memcpy(p + 13, &ts_recv, 8)
    memcpy(p + 21, &ts_pub, 8)
    memcpy(p + HEADER, b + 3, <size_t>names)
    return HEADER + names


def encode_record(int kind, str exchange not None, str symbol not None, str native not None,
                  int64_t ts_event, int64_t ts_recv, int64_t ts_pub, bytes payload not None):
    """Any record: the envelope, then ``payload`` as given."""
    cdef bytes block = _name_block(exchange, symbol, native)
    cdef Py_ssize_t size = HEADER + PyBytes_GET_SIZE(block) - 3 + PyBytes_GET_SIZE(payload)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = _head(p, kind, block, ts_event, ts_recv, ts_pub)
    memcpy(p + pos, PyBytes_AS_STRING(payload), <size_t>PyBytes_GET_SIZE(payload))
    return out


def encode_book(int kind, str exchange not None, str symbol not None, str native not None,
                Delta delta not None, int64_t ts_event, int64_t ts_recv, int64_t ts_pub):
    """A BOOK_SNAPSHOT / BOOK_DELTA record (``kind``; checked by the caller)."""
    cdef bytes block = _name_block(exchange, symbol, native)
    cdef Py_ssize_t bound = HEADER + PyBytes_GET_SIZE(block) + delta._encoded_max()
    cdef unsigned char stackbuf[STACK]
    cdef unsigned char *p = stackbuf
    cdef Py_ssize_t pos
    if bound > STACK:
        p = <unsigned char *>malloc(<size_t>bound)
        if p == NULL:
            raise MemoryError()
    try:
        pos = _head(p, kind, block, ts_event, ts_recv, ts_pub)
        pos += delta._encode_into(p + pos)
        return PyBytes_FromStringAndSize(<char *>p, pos)
    finally:
        if p != stackbuf:
            free(p)


cdef inline const char *_ascii(str text, Py_ssize_t *size) except NULL:
    if not PyUnicode_IS_ASCII(text):
        text.encode("ascii")            # raises the UnicodeEncodeError naming the character
    return PyUnicode_AsUTF8AndSize(text, size)


def encode_trade(str exchange not None, str symbol not None, str native not None,
                 str price not None, str size not None, str side not None,
                 str trade_id not None, int64_t ts_event, int64_t ts_recv, int64_t ts_pub):
    """A TRADE record: side, text lengths, then price and size (ASCII) and trade id (UTF-8)."""
    cdef int code
    if side == "buy":
        code = 0
    elif side == "sell":
        code = 1
    else:
        raise ValueError(f"trade side must be 'buy' or 'sell', got {side!r}")
    cdef Py_ssize_t lp, lz, lt
    cdef const char *tp = _ascii(price, &lp)
    cdef const char *tz = _ascii(size, &lz)
    cdef const char *tt = PyUnicode_AsUTF8AndSize(trade_id, &lt)
    if lp > 255 or lz > 255 or lt > 65535:
        raise ValueError("trade price/size text longer than 255 bytes or trade_id over 64 KiB")
    cdef bytes block = _name_block(exchange, symbol, native)
    cdef bytes out = PyBytes_FromStringAndSize(
        NULL, HEADER + PyBytes_GET_SIZE(block) - 3 + 5 + lp + lz + lt)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = _head(p, TRADE, block, ts_event, ts_recv, ts_pub)
    cdef uint16_t lt16 = <uint16_t>lt
    p[pos] = <unsigned char>code
    p[pos + 1] = <unsigned char>lp
    p[pos + 2] = <unsigned char>lz
    memcpy(p + pos + 3, &lt16, 2)
    pos += 5
    memcpy(p + pos, tp, <size_t>lp)
    memcpy(p + pos + lp, tz, <size_t>lz)
    memcpy(p + pos + lp + lz, tt, <size_t>lt)
    return out


# --- decoding: the hot records only ---------------------------------------------------------

cdef extern from "Python.h":
    int PyObject_GenericSetAttr(object o, object name, object value) except -1
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)

cdef enum:
    BOOK_SNAPSHOT = 2
    BOOK_DELTA = 3

cdef type _update_cls = None, _snapshot_cls = None, _trade_cls = None
cdef tuple _BOOK_FIELDS = ("exchange", "symbol", "native_symbol", "delta", "ts_event", "ts_recv")
cdef tuple _TRADE_FIELDS = ("exchange", "symbol", "native_symbol", "price", "size", "side",
                            "trade_id", "ts_event", "ts_recv")
cdef tuple _SIDES = ("buy", "sell")
# the name block's bytes -> (exchange, symbol, native)
cdef dict _decoded_names = {}


def use_event_classes(type update not None, type snapshot not None, type trade not None):
    """The event classes ``decode_event`` builds (handed over by ``alphapulse.wire``: this
    core extension imports no package module)."""
    global _update_cls, _snapshot_cls, _trade_cls
    _update_cls, _snapshot_cls, _trade_cls = update, snapshot, trade


cdef object _new(type cls, tuple fields, tuple values):
    # Slot by slot, past the frozen dataclass's __setattr__ (as the slot descriptors would).
    obj = cls.__new__(cls)
    cdef Py_ssize_t i
    for i in range(len(fields)):
        PyObject_GenericSetAttr(obj, fields[i], values[i])
    return obj


cdef tuple _names_of(bytes block, Py_ssize_t le, Py_ssize_t ls):
    cdef const char *p = PyBytes_AS_STRING(block)
    names = _decoded_names.get(block)
    if names is None:
        try:
            names = (PyUnicode_DecodeUTF8(p, le, NULL), PyUnicode_DecodeUTF8(p + le, ls, NULL),
                     PyUnicode_DecodeUTF8(p + le + ls, PyBytes_GET_SIZE(block) - le - ls, NULL))
        except UnicodeDecodeError:
            return None
        if len(_decoded_names) >= NAME_CACHE_MAX:
            _decoded_names.clear()
        _decoded_names[block] = names
    return <tuple>names


def decode_names(bytes block not None, Py_ssize_t le, Py_ssize_t ls):
    """``(exchange, symbol, native)`` of a record's name block (the lengths of the first two
    given), cached per block; None when the names are not UTF-8."""
    if le < 0 or ls < 0 or le + ls > PyBytes_GET_SIZE(block):
        return None
    return _names_of(block, le, ls)


def decode_event(bytes data not None):
    """The Trade, BookSnapshot or BookUpdate a well-formed record of those kinds stands for;
    None for any other record and for anything malformed (``wire.decode`` then decides, and
    raises its errors), so this only ever skips work."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), body, lp, lz, lt
    cdef int kind
    cdef int64_t ts_event, ts_recv
    cdef uint16_t lt16
    if n < HEADER or p[0] != MAGIC or _trade_cls is None:
        return None
    kind = p[1]
    if kind != TRADE and kind != BOOK_DELTA and kind != BOOK_SNAPSHOT:
        return None
    body = HEADER + p[2] + p[3] + p[4]
    if body > n:
        return None
    names = _names_of(PyBytes_FromStringAndSize(<const char *>p + HEADER, p[2] + p[3] + p[4]),
                      p[2], p[3])
    if names is None:
        return None
    memcpy(&ts_event, p + 5, 8)
    memcpy(&ts_recv, p + 13, 8)
    if kind == TRADE:
        if body + 5 > n or p[body] > 1:
            return None
        lp, lz = p[body + 1], p[body + 2]
        memcpy(&lt16, p + body + 3, 2)
        lt = lt16
        body += 5
        if body + lp + lz + lt != n:
            return None
        try:
            texts = (PyUnicode_DecodeASCII(<const char *>p + body, lp, NULL),
                     PyUnicode_DecodeASCII(<const char *>p + body + lp, lz, NULL),
                     PyUnicode_DecodeUTF8(<const char *>p + body + lp + lz, lt, NULL))
        except UnicodeDecodeError:
            return None
        return _new(_trade_cls, _TRADE_FIELDS, names + texts[:2] + (
            _SIDES[p[body - 5]], texts[2], ts_event, ts_recv))
    try:
        delta = Delta.decode(PyBytes_FromStringAndSize(<const char *>p + body, n - body))
    except ValueError:                  # BookError: malformed
        return None
    if (<Delta>delta).is_snapshot != (kind == BOOK_SNAPSHOT):
        return None
    return _new(_update_cls if kind == BOOK_DELTA else _snapshot_cls, _BOOK_FIELDS,
                names + (delta, ts_event, ts_recv))
