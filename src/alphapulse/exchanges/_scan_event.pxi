# Included by _scan.pyx: the scanners' event constructor.  ``EventMaker`` writes a frozen,
# slotted event's slots from C; ``_event`` pairs the event with the book's crossed flag.

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef struct PyTypeObject:
        Py_ssize_t tp_dictoffset
        object (*tp_alloc)(PyTypeObject *, Py_ssize_t)
    int T_OBJECT_EX


cdef class EventMaker:
    """``EventMaker(BookUpdate)(exchange, symbol, native_symbol, delta, ts_event, ts_recv)``
    builds the frozen, slotted event by writing its six slots directly (a dataclass
    ``__init__`` costs six ``object.__setattr__`` calls; ``_hotpath.new_book_event`` six
    generic attribute stores).  A class of any other layout is simply called."""

    cdef object cls
    cdef Py_ssize_t offsets[6]
    cdef readonly bint direct    # slots written directly (else the class is called)

    def __init__(self, type cls not None):
        names = ("exchange", "symbol", "native_symbol", "delta", "ts_event", "ts_recv")
        self.cls = cls
        self.direct = getattr(cls, "__slots__", None) == names and \
            (<PyTypeObject *>cls).tp_dictoffset == 0
        for i, name in enumerate(names if self.direct else ()):
            descr = cls.__dict__.get(name)
            if type(descr).__name__ != "member_descriptor" or \
                    (<PyMemberDescrObject *>descr).d_member.type != T_OBJECT_EX:
                self.direct = False
                break
            self.offsets[i] = (<PyMemberDescrObject *>descr).d_member.offset

    cdef object build(self, object exchange, object symbol, object native, object delta,
                      object ts_event, object ts_recv):
        cdef object obj, value
        cdef tuple values
        cdef Py_ssize_t i
        if not self.direct:
            return self.cls(exchange, symbol, native, delta, ts_event, ts_recv)
        obj = (<PyTypeObject *>self.cls).tp_alloc(<PyTypeObject *>self.cls, 0)   # zeroed slots
        values = (exchange, symbol, native, delta, ts_event, ts_recv)
        for i in range(6):
            value = values[i]
            Py_INCREF(value)                 # the slot owns a reference, as a setattr would
            (<PyObject **>(<char *><PyObject *>obj + self.offsets[i]))[0] = <PyObject *>value
        return obj

    def __call__(self, exchange, symbol, native_symbol, delta, ts_event, ts_recv):
        return self.build(exchange, symbol, native_symbol, delta, ts_event, ts_recv)


cdef object _event(EventMaker make, OrderBook book, object native, object delta,
                   long long ts_event, object ts_recv):
    """``(make(...), crossed)``; crossed as ``OrderBook.crossed`` says it."""
    cdef int64_t bk, bz, ak, az
    ev = make.build(book.exchange, book.symbol, native, delta, ts_event, ts_recv)
    return ev, bool(ap_side_best(&book.side[0], &bk, &bz) and
                    ap_side_best(&book.side[1], &ak, &az) and bk >= -ak)
