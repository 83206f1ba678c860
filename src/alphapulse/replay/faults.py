"""Fault switches for the replay servers: what a misbehaving exchange or network does.

Indices are 0-based positions in the concatenated capture (line numbers of the frames, blank
lines skipped), so a test can name "the 2,500th line" exactly.  Every index-triggered fault fires
once per server, even though a reconnecting client resumes at that same position.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, fields


@dataclass
class Faults:
    drop_connection_at: frozenset[int] = frozenset()
    """Close the connection instead of sending the frame at these indices (resent later)."""
    drop_probability: float = 0.0
    """Per-frame probability of dropping the connection (seeded by ``seed``)."""
    abrupt: bool = True
    """Drop = abort the TCP connection (no close frame); False sends close code 1001."""
    silent_at: int | None = None
    """Before this index stop sending anything (data and idle heartbeats); the socket stays
    open and still answers pings: only a staleness deadline notices."""
    silent_for: float | None = None
    """Resume after this many seconds; None = stay silent until the client goes away."""
    stall_at: int | None = None
    """Before this index stop reading the socket too, so pings go unanswered (dead peer)."""
    drop_messages: frozenset[int] = frozenset()
    """Never send these frames (the market state still includes them)."""
    duplicate_messages: frozenset[int] = frozenset()
    """Send these frames twice."""
    reorder_messages: frozenset[int] = frozenset()
    """Send frame N+1 before frame N."""
    lose_on_disconnect: int = 0
    """Frames the market moves on by while the client is reconnecting (they are lost to it)."""
    rest_errors: tuple[int, ...] = ()
    """HTTP status for the first len() REST requests (e.g. (429, 429) or (418,) or (503,))."""
    retry_after: int = 1
    """Retry-After header (seconds) sent with 429/418/503 answers."""
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("drop_connection_at", "drop_messages", "duplicate_messages",
                     "reorder_messages"):
            setattr(self, name, frozenset(getattr(self, name)))
        self.rest_errors = tuple(self.rest_errors)
        if not 0.0 <= self.drop_probability <= 1.0:
            raise ValueError("drop_probability must be within [0, 1]")
        self._rng.seed(self.seed)

    def roll(self) -> bool:
        return self.drop_probability > 0 and self._rng.random() < self.drop_probability

    @property
    def active(self) -> bool:
        return bool(self.drop_connection_at or self.drop_probability or self.silent_at is not None
                    or self.stall_at is not None or self.drop_messages or self.duplicate_messages
                    or self.reorder_messages)

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """From the CLI form ``name=value[,name=value...]``; list values separated by ``:``.

        Example: ``drop_connection_at=100:900,rest_errors=429:429,silent_at=500``.
        """
        kinds = {f.name: f.type for f in fields(cls) if not f.name.startswith("_")}
        values: dict[str, object] = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, raw = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in kinds:
                raise ValueError(f"fault {item!r}: expected one of {', '.join(kinds)} as name=value")
            kind = str(kinds[name])
            if "frozenset" in kind or "tuple" in kind:
                values[name] = [int(v) for v in raw.split(":") if v]
            elif "bool" in kind:
                values[name] = raw.lower() in ("1", "true", "yes", "on")
            elif "float" in kind:
                values[name] = float(raw)
            else:
                values[name] = int(raw)
        return cls(**values)  # type: ignore[arg-type]
