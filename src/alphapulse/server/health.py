"""The service's health verdict, for ``GET /health`` (:func:`report`)."""
from __future__ import annotations

import time
from typing import Any


def report(runtime: Any) -> dict[str, Any]:
    """What ``GET /health`` reports: each collector's connection and last message age, the
    store, Redis, WebSocket and shm state, and an overall verdict.

    ``healthy`` (HTTP 200 when True, 503 when False) means "this service has live data":

    * with ``--source exchanges`` every collector is connected and has had a message within
      ``stale_after_s``;
    * with ``--source redis`` the Redis reader is connected: Redis *is* the data source, so
      with Redis down the service has no data and is unhealthy (503), whatever it still
      serves from memory.

    A Redis *writer* that is down (``--redis-url`` next to the exchanges) does not make the
    service unhealthy: the local data path (HTTP API, WebSocket, shared-memory feeds) keeps
    serving, writes are buffered within a bound and counted when dropped, and the writer
    catches up when Redis returns.  That is ``status: "degraded"`` with 200, so a load
    balancer keeps the instance while an operator sees ``redis.state == "down"``.
    ``status`` is "ok", "degraded" or "unhealthy"; ``problems`` says why, one line each.
    """
    now = time.time()
    stale = runtime.config.stale_after_s
    healthy = True
    problems: list[str] = []
    exchanges: dict[str, Any] = {}
    for name, collector in runtime.collectors.items():
        stats = collector.stats
        last = stats.get("last_message_ts") or 0.0
        age = round(now - last, 3) if last else None
        connected = bool(stats.get("connected"))
        ok = connected and age is not None and age < stale
        if not ok:
            healthy = False
            problems.append(f"{name}: " + ("not connected" if not connected else
                                           "no message yet" if age is None else
                                           f"no message for {age:g} s (limit {stale:g} s)"))
        exchanges[name] = {
            "connected": connected, "last_message_age_s": age,
            "healthy": ok, "reconnects": stats.get("reconnects", 0),
            "books": {s: collector.state(s) for s in runtime.config.symbols},
            "gaps": stats.get("gaps", 0), "resyncs": stats.get("resyncs", 0),
            "rejected": sum(stats.get("rejected", {}).values()),
        }
    out: dict[str, Any] = {
        "source": runtime.config.source,
        "uptime_s": round((time.time_ns() - runtime.started_ns) / 1e9, 3),
        "exchanges": exchanges,
        "store": {"trades": sum(n for _, _, n, _ in runtime.store.sizes()),
                  "series": len(runtime.store.keys()), "capacity": runtime.store.capacity},
        "websocket": {"clients": runtime.ws.stats["clients"],
                      "slow_clients_closed": runtime.ws.stats["slow_closed"]},
        "redis": None,
    }
    degraded = False
    if runtime.redis_writer is not None:
        up = bool(runtime.redis_writer.connected)
        out["redis"] = {"role": "writer", "state": "up" if up else "down",
                        **runtime.redis_writer.health()}
        if not up:
            degraded = True
            problems.append("redis writer: Redis unreachable, buffering "
                            f"({runtime.redis_writer.buffered} entries)")
    if runtime.redis_reader is not None:
        up = bool(runtime.redis_reader.connected)
        out["redis"] = {"role": "source", "state": "up" if up else "down",
                        **runtime.redis_reader.health()}
        if not up:
            healthy = False
            problems.append("redis source: Redis unreachable, no data")
    if runtime.shm is not None and hasattr(runtime.shm, "stats"):
        stats = runtime.shm.stats
        out["shm"] = stats() if callable(stats) else stats
    out["healthy"] = healthy
    out["status"] = "unhealthy" if not healthy else ("degraded" if degraded else "ok")
    out["problems"] = problems
    return out
