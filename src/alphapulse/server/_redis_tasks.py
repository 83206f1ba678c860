"""How the Redis writer's and reader's background tasks wait out an outage and end."""
from __future__ import annotations

import asyncio

# Seconds to wait before each reconnection attempt after a failure (the last one repeats).
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


async def _end(task: asyncio.Task[None], grace: float) -> None:
    """Let ``task`` end by itself within ``grace`` s, else cancel it (bounded wait).

    The writer's and reader's tasks are asked to stop by a flag, not cancelled: redis-py can
    swallow a cancellation that lands inside a command (a blocking XREAD, a flush) and leave the
    task pending for ever (redis/redis-py#2028, #2579; seen here as a test that never ended).
    Cancelling is the fallback for a task parked outside redis-py (a backoff sleep).
    """
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if task.done() and not task.cancelled():
        task.result()          # what ended it unexpectedly surfaces here, as awaiting it did
