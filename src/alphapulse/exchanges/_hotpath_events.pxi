# Included by _hotpath.pyx: building the frozen, slotted book events from C.

cdef str A_EXCHANGE = "exchange", A_SYMBOL = "symbol", A_NATIVE = "native_symbol"
cdef str A_DELTA = "delta", A_TS_EVENT = "ts_event", A_TS_RECV = "ts_recv"


def new_book_event(type cls, exchange, symbol, native_symbol, delta, ts_event, ts_recv):
    """``cls(exchange, symbol, native_symbol, delta, ts_event, ts_recv)`` for the frozen,
    slotted BookUpdate/BookSnapshot dataclasses, set slot by slot from C (the dataclass
    ``__init__`` costs six Python-level ``object.__setattr__`` calls per event)."""
    return _new_event(cls, exchange, symbol, native_symbol, delta, ts_event, ts_recv)


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
        int flags
    enum:
        T_OBJECT_EX
        READONLY

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    PyTypeObject PyMemberDescr_Type

cdef extern from *:
    """
    static inline PyObject *ap_type_alloc(PyTypeObject *t) { return t->tp_alloc(t, 0); }
    """
    PyObject *ap_type_alloc(PyTypeObject *t)

cdef tuple _EVENT_FIELDS = (A_EXCHANGE, A_SYMBOL, A_NATIVE, A_DELTA, A_TS_EVENT, A_TS_RECV)
cdef object _event_cls = None          # the class _event_off describes
cdef Py_ssize_t _event_off[6]


cdef bint _event_layout(type cls) except -1:
    """Record where ``cls`` keeps its six fields, if they are plain writable object slots
    (what ``@dataclass(slots=True)`` makes); False for any other layout."""
    global _event_cls
    cdef PyMemberDef *m
    cdef Py_ssize_t i
    for i in range(6):
        d = cls.__dict__.get(_EVENT_FIELDS[i])
        if d is None or type(d) is not <type>&PyMemberDescr_Type:
            return False
        m = (<PyMemberDescrObject *>d).d_member
        if m.type != T_OBJECT_EX or m.flags & READONLY:
            return False
        _event_off[i] = m.offset
    _event_cls = cls
    return True


cdef inline void _put(PyObject *o, Py_ssize_t offset, object value) noexcept:
    Py_INCREF(value)
    (<PyObject **>(<char *>o + offset))[0] = <PyObject *>value


cdef object _new_event(type cls, exchange, symbol, native_symbol, delta, ts_event, ts_recv):
    # Straight into the slots of a fresh instance (what object.__new__ plus the member
    # descriptors' __set__ do, without six attribute lookups); generic setattr otherwise.
    cdef PyObject *o
    if cls is _event_cls or _event_layout(cls):
        o = ap_type_alloc(<PyTypeObject *>cls)
        if o == NULL:
            raise MemoryError()
        _put(o, _event_off[0], exchange)
        _put(o, _event_off[1], symbol)
        _put(o, _event_off[2], native_symbol)
        _put(o, _event_off[3], delta)
        _put(o, _event_off[4], ts_event)
        _put(o, _event_off[5], ts_recv)
        obj = <object>o
        Py_DECREF(obj)                 # <object> took a second reference to the new one
        return obj
    obj = cls.__new__(cls)
    PyObject_GenericSetAttr(obj, A_EXCHANGE, exchange)
    PyObject_GenericSetAttr(obj, A_SYMBOL, symbol)
    PyObject_GenericSetAttr(obj, A_NATIVE, native_symbol)
    PyObject_GenericSetAttr(obj, A_DELTA, delta)
    PyObject_GenericSetAttr(obj, A_TS_EVENT, ts_event)
    PyObject_GenericSetAttr(obj, A_TS_RECV, ts_recv)
    return obj
