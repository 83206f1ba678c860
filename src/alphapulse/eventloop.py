"""Which asyncio event loop a process runs on: uvloop when it is there, else the stdlib's.

The server and the paced fake exchanges of the load tests (``replay.paced``) both choose here.

The server's CPU at realistic feed rates (~2,000 messages/s spread over three connections) is
set less by the messages than by what each wakeup costs: the loop turn, the selector and the
socket read around a frame or two.  uvloop does that part in C; against the same paced driver
the whole server used ~16% less CPU at 2,000 msgs/s (``scripts/load-test ramp``; README).
Everything the server does is plain asyncio API, so both loops run the same code.
"""
from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "available", "resolve", "run", "running"]

T = TypeVar("T")

#: ``auto``: uvloop if installed, else asyncio.
LOOPS = ("auto", "asyncio", "uvloop")


def available(kind: str) -> bool:
    return kind != "uvloop" or importlib.util.find_spec("uvloop") is not None


def resolve(kind: str) -> str:
    """``auto`` -> the loop that will actually run."""
    if kind == "auto":
        return "uvloop" if available("uvloop") else "asyncio"
    return kind


def running() -> str:
    """The kind of the loop running now (call from inside it)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") \
        else "asyncio"


def _factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if resolve(kind) == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    return None           # asyncio.Runner's default: a new stdlib loop


def run(main: Coroutine[Any, Any, T], kind: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop *kind* names."""
    with asyncio.Runner(loop_factory=_factory(kind)) as runner:
        return runner.run(main)
