"""Stub for the compiled WebSocket frame slicing (``_wsframes.pyx``)."""
from collections.abc import Buffer, Callable

NOT_SIMPLE: int
HEAD_PARTIAL: int

def dispatch_frames(
    data: Buffer, handler: Callable[[bytes, int], object], ts_recv: int, limit: int
) -> tuple[int, None | bool | Exception]: ...
def slice_frames(data: Buffer, limit: int) -> tuple[int, list[tuple[bool, bytes]]]: ...
def simple_missing(data: Buffer, limit: int) -> int: ...
