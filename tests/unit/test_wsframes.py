"""The compiled WebSocket front door (exchanges/_wsframes.pyx): which frames it hands over,
where it stops, and how it reports the handler's answer."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse.exchanges import _wsframes
from alphapulse.exchanges._wsframes import (HEAD_PARTIAL, NOT_SIMPLE, dispatch_frames, simple_missing,
                                            slice_frames)


def _frame(payload: bytes, first: int = 0x81, masked: bool = False, long64: bool = False) -> bytes:
    n, mask = len(payload), 0x80 if masked else 0
    if long64:
        head = bytes((first, 127 | mask)) + n.to_bytes(8, "big")
    elif n < 126:
        head = bytes((first, n | mask))
    else:
        head = bytes((first, 126 | mask)) + n.to_bytes(2, "big")
    return head + (b"\x00\x00\x00\x00" if masked else b"") + payload


def _collect(data: object, limit: int = -1) -> tuple[list[tuple[bytes, int]], int, object]:
    got: list[tuple[bytes, int]] = []

    def handler(payload: bytes, ts: int) -> bool:
        got.append((payload, ts))
        return True

    taken, stop = dispatch_frames(data, handler, 42, limit)
    return got, taken, stop


def test_every_length_class_text_and_binary() -> None:
    payloads = [b"", b"a", b"x" * 125, b"y" * 126, b"z" * 65535]
    data = b"".join(_frame(p, 0x81 if i % 2 else 0x82) for i, p in enumerate(payloads))
    got, taken, stop = _collect(data)
    assert [p for p, _ in got] == payloads and {ts for _, ts in got} == {42}
    assert (taken, stop) == (len(data), None)
    assert all(type(p) is bytes for p, _ in got)


@pytest.mark.parametrize("stopper", [
    _frame(b"ping", 0x89),                  # control frame
    _frame(b"frag", 0x01),                  # not final (a fragment)
    _frame(b"cont", 0x80),                  # continuation
    _frame(b"rsv", 0xC1),                   # RSV1 set (an extension's frame)
    _frame(b"masked", masked=True),         # a server never masks
    _frame(b"big", long64=True),            # 64-bit length: websockets' path
])
def test_stops_before_anything_not_a_simple_frame(stopper: bytes) -> None:
    head = _frame(b"one") + _frame(b"two")
    got, taken, stop = _collect(head + stopper + _frame(b"after"))
    assert [p for p, _ in got] == [b"one", b"two"]
    assert (taken, stop) == (len(head), None)


@pytest.mark.parametrize("partial", [
    _frame(b"partial")[:-1],                # the payload not complete yet
    b"\x81",                                # one byte of a header
    _frame(b"x" * 300)[:3],                 # half a 16-bit length
])
def test_stops_before_an_incomplete_frame_at_the_end(partial: bytes) -> None:
    head = _frame(b"one") + _frame(b"two")
    got, taken, stop = _collect(head + partial)
    assert [p for p, _ in got] == [b"one", b"two"]
    assert (taken, stop) == (len(head), None)


def test_size_limit_leaves_a_larger_frame_to_websockets() -> None:
    data = _frame(b"x" * 100) + _frame(b"y" * 101)
    got, taken, stop = _collect(data, limit=100)
    assert [len(p) for p, _ in got] == [100] and taken == len(_frame(b"x" * 100))
    assert _collect(data, limit=101)[1] == len(data)
    assert slice_frames(data, 100)[0] == taken and slice_frames(data, 101)[0] == len(data)


def test_handler_false_stops_after_that_frame() -> None:
    frames = [_frame(b"%d" % i) for i in range(5)]
    seen: list[bytes] = []

    def handler(payload: bytes, ts: int) -> bool:
        seen.append(payload)
        return payload != b"2"

    taken, stop = dispatch_frames(b"".join(frames), handler, 0, -1)
    assert seen == [b"0", b"1", b"2"]
    assert (taken, stop) == (sum(map(len, frames[:3])), False)


def test_handler_exception_is_returned_with_the_frame_counted_as_taken() -> None:
    frames = [_frame(b"%d" % i) for i in range(4)]
    boom = ValueError("sink bug")

    def handler(payload: bytes, ts: int) -> bool:
        if payload == b"1":
            raise boom
        return True

    taken, stop = dispatch_frames(b"".join(frames), handler, 0, -1)
    assert stop is boom and taken == sum(map(len, frames[:2]))


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_any_buffer(wrap: type) -> None:
    data = _frame(b"abc") + _frame(b"def", 0x82)
    assert [p for p, _ in _collect(wrap(data))[0]] == [b"abc", b"def"]


_FRAMES = st.one_of(
    st.tuples(st.just("simple"), st.binary(max_size=300), st.sampled_from([0x81, 0x82])),
    st.tuples(st.just("other"), st.binary(max_size=20), st.sampled_from([0x89, 0x8A, 0x01, 0x80, 0xC1])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FRAMES, max_size=12), st.integers(min_value=0, max_value=4000))
def test_takes_exactly_the_leading_complete_simple_frames(frames: list, cut: int) -> None:
    data = b"".join(_frame(p, first) for _, p, first in frames)
    data = data[:cut]
    expected, pos = [], 0
    for kind, payload, first in frames:
        end = pos + len(_frame(payload, first))
        if kind != "simple" or end > len(data):
            break
        expected.append(payload)
        pos = end
    got, taken, stop = _collect(data)
    assert [p for p, _ in got] == expected and taken == pos and stop is None
    # slice_frames takes the same frames, each with its kind.
    sliced_taken, sliced = slice_frames(data, -1)
    assert sliced_taken == pos and [p for _, p in sliced] == expected
    simple = [first == 0x81 for kind, _, first in frames if kind == "simple"]
    assert [is_text for is_text, _ in sliced] == simple[:len(sliced)]


def test_simple_missing_counts_what_is_still_to_come() -> None:
    small, big = _frame(b"x" * 100), _frame(b"y" * 300)          # 2- and 4-byte headers
    assert simple_missing(small, -1) == simple_missing(big, -1) == 0
    assert simple_missing(small[:50], -1) == len(small) - 50
    assert simple_missing(big[:4], -1) == 300
    assert simple_missing(small[:1], -1) == simple_missing(big[:3], -1) == HEAD_PARTIAL
    for other in (b"", _frame(b"p", 0x89), _frame(b"f", 0x01), _frame(b"m", masked=True),
                  _frame(b"l", long64=True)[:5]):
        assert simple_missing(other, -1) == NOT_SIMPLE
    assert simple_missing(big[:10], 299) == NOT_SIMPLE                 # over the size limit
    assert simple_missing(big[:10], 300) == len(big) - 10


def test_stub_names_what_the_module_offers() -> None:
    stub = ast.parse(Path(_wsframes.__file__).with_name("_wsframes.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, ast.FunctionDef)}
    names |= {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign)}  # type: ignore[union-attr]
    assert names == {n for n in dir(_wsframes) if not n.startswith("_")} == {
        "dispatch_frames", "slice_frames", "simple_missing", "NOT_SIMPLE", "HEAD_PARTIAL"}
