# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled scanners for the hottest Coinbase and Binance.US frames: scan, validate, apply.

Each scanner takes one raw frame and either handles it *completely* (the book is updated and
the BookUpdate event is built) or returns None having changed nothing, and the caller then
runs the general orjson path on the same frame.  A frame is handled only when it is
byte-for-byte the canonical shape the exchange writes (compact JSON, this key order, strings
of printable ASCII without escapes, integers without sign, fraction or exponent), every
number text is one the book accepts, and the parser state says the general path would take
its in-order fast branch.  So the scanners only ever skip work, never decide anything: every
rejection, gap and resync still comes from the general path.

Coinbase Advanced Trade ``l2_data`` update (``"client_id":""`` after the channel optional)::

    {"channel":"l2_data","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":14,
     "events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid",
     "event_time":"...","price_level":"65062.5","new_quantity":"0.00583"}]}]}

Binance.US ``depthUpdate``, bare or inside a combined-stream ``{"stream":"...","data":...}``::

    {"e":"depthUpdate","E":1618677408921,"s":"BTCUSDT","U":372026686,"u":372026687,
     "b":[["60511.37000000","0.00904000"]],"a":[]}

The number texts go straight from the frame into the book's parse buffer (``_book.pxd``),
through the same ``ap_parse_decimal`` the book applies to ``str`` input.

The module is one C extension assembled from includes, one job each (textual includes keep
the small ``inline`` helpers inlined into every scanner, as one file would):

* ``_scan_common.pxi``   shared parse buffer and byte-scanning primitives, level arrays;
* ``_scan_event.pxi``    ``EventMaker``, the BookUpdate built by writing its slots from C;
* ``_scan_coinbase.pxi`` ``coinbase_l2_update`` / ``coinbase_l2_snapshot`` / ``coinbase_trades``;
* ``_scan_binance.pxi``  ``binance_depth_update`` / ``binance_trade``.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.list cimport PyList_Append
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport int64_t
from libc.stdlib cimport realloc
from libc.string cimport memchr, memcmp, memcpy

from alphapulse._book cimport AP_DEC_OK, OrderBook, ap_change, ap_parse_decimal, ap_side_best

from ._hotpath import rfc3339_ns

ctypedef unsigned char uchar

cdef str LIVE = "live"


include "_scan_common.pxi"
include "_scan_event.pxi"
include "_scan_coinbase.pxi"
include "_scan_binance.pxi"
