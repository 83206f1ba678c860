"""The feed's control-protocol pieces: channel grammar, directory naming, filter matching."""
from __future__ import annotations

from pathlib import Path

import pytest

from alphapulse import feed
from alphapulse.server._subscribers import Subscriber, matches


@pytest.mark.parametrize("text, key", [
    ("book:kraken:BTC-USD", ("book", "kraken", "BTC-USD")),
    ("trades:*:ETH-USD", ("trades", "*", "ETH-USD")),
    ("book:coinbase:*", ("book", "coinbase", "*")),
    ("arbitrage:BTC-USD", ("arbitrage", "*", "BTC-USD")),
])
def test_channels_parse_and_format_back(text, key):
    assert feed.parse_channel(text) == key
    assert feed.format_channel(key) == text


@pytest.mark.parametrize("bad", ["book", "book:kraken", "book::BTC-USD", "ticker:kraken:BTC-USD",
                                 "book:kraken:BTC-USD:x", "arbitrage:", "", 7])
def test_bad_channels_are_named(bad):
    with pytest.raises(ValueError, match="channel"):
        feed.parse_channel(bad)


def test_feed_dir(monkeypatch, tmp_path):
    assert feed.feed_dir("x", tmp_path) == tmp_path / "alphapulse-x"
    monkeypatch.setenv("ALPHAPULSE_SHM_DIR", str(tmp_path / "env"))
    assert feed.feed_dir("default") == tmp_path / "env" / "alphapulse-default"
    monkeypatch.delenv("ALPHAPULSE_SHM_DIR")
    assert feed.feed_dir().parent == Path(feed.ring.DEFAULT_DIR)
    for bad in ("", "a/b", ".."):
        with pytest.raises(ValueError):
            feed.feed_dir(bad)


class _W:   # matches() reads only the channel set
    pass


def _sub(*channels: str) -> Subscriber:
    return Subscriber(1, 1, "t", _W(), {feed.parse_channel(c) for c in channels})  # type: ignore[arg-type]


def test_filter_matching():
    s = _sub("book:kraken:BTC-USD", "trades:*:ETH-USD", "arbitrage:BTC-USD")
    assert matches(s, "book", "kraken", "BTC-USD")
    assert not matches(s, "book", "kraken", "ETH-USD")
    assert not matches(s, "book", "coinbase", "BTC-USD")
    assert matches(s, "trades", "coinbase", "ETH-USD")
    assert not matches(s, "trades", "kraken", "BTC-USD")
    assert matches(s, "arbitrage", "*", "BTC-USD") and not matches(s, "arbitrage", "*", "ETH-USD")
    # Gaps go to whoever has the book or the trades of that pair; "" = the whole exchange.
    assert matches(s, "gap", "kraken", "BTC-USD")
    assert matches(s, "gap", "binanceus", "ETH-USD")
    assert not matches(s, "gap", "coinbase", "BTC-USD")
    assert matches(s, "gap", "kraken", "")
    assert not matches(_sub("book:kraken:*"), "gap", "coinbase", "")
    everything = _sub("book:*:*")
    assert matches(everything, "book", "binanceus", "SOL-USD")
    assert not matches(everything, "trades", "binanceus", "SOL-USD")


def test_shm_publisher_halves_resolve_to_their_implementations():
    """ShmPublisher is composed of mixins; a typing stub in one half must never shadow the
    real method of another (the MRO would pick the stub and the publisher would go deaf)."""
    from alphapulse.server.shm import ShmPublisher
    owners = {"_service": "ControlSocket", "_attach": "ControlSocket",
              "_remove": "ShmLifetime", "tick": "ShmLifetime", "start": "ShmLifetime",
              "close": "ShmLifetime", "poll": "ShmLifetime", "_recover": "ShmRecovery",
              "_resume": "ShmRecovery", "_dropped": "ShmRecovery", "_book": "ShmRecovery",
              "available": "ShmPublisher", "on_event": "ShmPublisher", "_route": "ShmPublisher"}
    assert {name: getattr(ShmPublisher, name).__qualname__.split(".")[0]
            for name in owners} == owners


def test_feed_names_importable_as_before():
    """feed.py became a package and two exceptions moved to alphapulse.errors: the old import
    paths still give the same objects."""
    from alphapulse import errors
    from alphapulse.feed import (CONTROL_SOCKET, DEFAULT_CAPACITY, MAX_CAPACITY, MAX_MESSAGE,
                                 MIN_CAPACITY, RING_SUFFIX, SERVER_INFO, WILDCARD, Feed,
                                 FeedError, Overrun, Resync, attach, feed_dir)
    from alphapulse.server.shm import FeedNameInUse, ShmPublisher, make_publisher
    assert FeedError is errors.FeedError and issubclass(FeedError, errors.AlphaPulseError)
    assert issubclass(FeedError, ConnectionError)
    assert FeedNameInUse is errors.FeedNameInUse and issubclass(FeedNameInUse, errors.RingError)
    assert (CONTROL_SOCKET, RING_SUFFIX, SERVER_INFO, WILDCARD) == (
        "control.sock", ".ring", "server.json", "*")
    assert MIN_CAPACITY <= DEFAULT_CAPACITY <= MAX_CAPACITY and MAX_MESSAGE > 0
    assert all(callable(x) for x in (Feed, Overrun, Resync, attach, feed_dir, ShmPublisher,
                                     make_publisher))
