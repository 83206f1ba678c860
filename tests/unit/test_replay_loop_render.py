"""Looper.chunk renders the frames a plain slot-by-slot renderer would, byte for byte.

The looper renders through per-template %-formats (replay/loop.py ``_plan``) to keep the load
driver cheap; this pins its output to the obvious rendering: every slot numbered in order
(sequence numbers shared with the session's own frames, trade ids, id offsets and times moved
by the pass), a WebSocket header of the payload's size, across pass boundaries and chunk sizes.
"""
from __future__ import annotations

import types
from itertools import accumulate

from alphapulse.replay.loop import (
    BOOK, TRADE, Looper, _BN_TIME, _BN_TRADE, _BN_U, _CB_SEQ, _CB_TRADE, _KR_TIME, _KR_TRADE,
    _SEQ, _TIME, _TRADE_ID, _UID, _kraken_text, _kraken_us, _template, _ws_header, _Template)


def _reference(looper: Looper, templates: list[_Template], n: int, state: dict) -> list[bytes]:
    """The next ``n`` frames, one slot at a time (``state``: pos, passes, seq, trade_id)."""
    out = []
    for _ in range(n):
        if state["pos"] == len(templates):
            state["pos"] = 0
            state["passes"] += 1
        t = templates[state["pos"]]
        state["pos"] += 1
        payload = t.pieces[0]
        for slot, value, piece in zip(t.slots, t.values, t.pieces[1:]):
            if slot == _SEQ:
                text, state["seq"] = b"%d" % state["seq"], state["seq"] + 1
            elif slot == _TRADE_ID:
                text, state["trade_id"] = b"%d" % state["trade_id"], state["trade_id"] + 1
            elif slot == _TIME:
                text = looper.time_text(value + state["passes"] * looper.time_shift)
            else:
                text = b"%d" % (value + state["passes"] * looper.uid_step)
            payload += text + piece
        out.append(_ws_header(len(payload)) + payload)
    return out


def _templates() -> list[_Template]:
    cb, kr, bn = [(_CB_SEQ, _SEQ), (_CB_TRADE, _TRADE_ID)], \
        [(_KR_TRADE, _TRADE_ID), (_KR_TIME, _TIME, _kraken_us)], \
        [(_BN_TRADE, _TRADE_ID), (_BN_TIME, _TIME)]
    return [
        _template(b'{"channel":"book","pct":"5%d%%"}', (), BOOK),               # '%' kept
        _template(b'{"sequence_num":7,"x":"%s"}', cb, BOOK),
        _template(b'{"U":98,"u":99,"pad":"' + b"x" * 200 + b'"}', [(_BN_U, _UID)], BOOK),
        _template(b'{"sequence_num":8,"trades":[{"trade_id":"41"},{"trade_id":"42"}]}', cb,
                  TRADE, 2),
        _template(b'{"trade_id":5,"timestamp":"2026-11-27T10:00:00.221587Z","q":"1%"}', kr,
                  TRADE),
        _template(b'{"E":1700000000123,"t":77,"T":1700000000120}', bn, TRADE),
        _template(b'{"big":"' + b"y" * 70_000 + b'"}', (), BOOK),                # 8-byte length
    ]


def _check(looper: Looper, templates: list[_Template], sizes: list[int]) -> None:
    state = {"pos": 0, "passes": 1, "seq": looper.seq, "trade_id": looper.trade_id}
    session = types.SimpleNamespace(seq=looper.seq)
    looper.numbering = session
    for k, n in enumerate(sizes):
        if k % 3 == 0:                  # the session numbered a frame of its own (heartbeat)
            session.seq += 1
            state["seq"] += 1
        chunk = looper.chunk(n)
        frames = _reference(looper, templates, n, state)
        assert chunk.buf == b"".join(frames)
        assert chunk.ends == list(accumulate(map(len, frames)))
        trades = books = 0
        for i in range(n):
            t = templates[(sum(sizes[:k]) + i) % len(templates)]
            trades += t.trades
            books += t.kind == BOOK
            assert (chunk.trades[i], chunk.books[i]) == (trades, books)
        assert looper.passes == state["passes"] and session.seq == state["seq"]


def test_chunks_match_the_slot_by_slot_rendering_over_passes() -> None:
    templates = _templates()
    looper = Looper([], templates, seq=1000, trade_id=500, uid_step=3, time_shift=2_000_000,
                    time_text=_kraken_text)
    _check(looper, templates, [1, 2, 5, len(templates), 3 * len(templates) + 1, 4, 9])


def test_default_time_text_and_repeated_trades_render_alike() -> None:
    templates = _templates()
    looper = Looper([], templates, seq=5, trade_id=1, uid_step=10, time_shift=1000,
                    trade_share=0.7)
    assert len(looper.templates) > len(templates)         # trade frames were repeated
    _check(looper, looper.templates, [3, 17, 2 * len(looper.templates), 1])
