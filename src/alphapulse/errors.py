"""The exception tree.  One root; builtin mixins so callers can catch what they already know.

Messages name the field, parameter or file that is wrong and why.
"""
from __future__ import annotations


class AlphaPulseError(Exception):
    """Root of every exception AlphaPulse raises on purpose."""


# --- shared-memory rings -------------------------------------------------------------------

class RingError(AlphaPulseError, OSError):
    """A ring file could not be created, attached or used."""


class RingFormatError(RingError, ValueError):
    """The file is not a ring, has another layout version, is truncated or corrupt."""


class RingPermissionError(RingError, PermissionError):
    """The ring file exists but this user may not open it."""


class RingOverrun(RingError):
    """The reader missed records; ``missed`` says exactly how many.

    Raised once, in order, before the first record after the gap.  Reading again returns that
    record.
    """

    def __init__(self, missed: int) -> None:
        super().__init__(f"ring overrun: {missed} record(s) missed")
        self.missed = missed


class ProducerGone(RingError):
    """The ring's producer died (or closed) and every record it published has been read."""


# --- order books ---------------------------------------------------------------------------

class BookError(AlphaPulseError, ValueError):
    """Bad input to an order book.  ``field`` names the offending field; the book is unchanged."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SequenceError(BookError):
    """A delta does not continue the book it is applied to (its sequence is not the next one)."""


# --- collectors ----------------------------------------------------------------------------

class ProtocolError(AlphaPulseError, ValueError):
    """An exchange message could not be understood.  ``reason`` is a short counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- configuration and clients -------------------------------------------------------------

class ConfigError(AlphaPulseError, ValueError):
    """A setting is invalid; ``setting`` names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class ClientError(AlphaPulseError):
    """The AlphaPulse HTTP API answered with an error or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --- the shared-memory feed (alphapulse.feed, alphapulse.server.shm) ----------------------------

class FeedError(AlphaPulseError, ConnectionError):
    """Could not attach to, or talk to, the named server's feed."""


class FeedNameInUse(RingError):
    """Another live server already publishes under this name in this directory."""
