"""Query-parameter parsing: every bad value is a ParamError naming the parameter, with a 4xx."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse.server import params
from alphapulse.server.params import MAX_LIMIT, ParamError


def _error(fn, *args, **kwargs) -> ParamError:
    with pytest.raises(ParamError) as info:
        fn(*args, **kwargs)
    return info.value


def test_limit_bounds_and_default() -> None:
    assert params.limit({}) == 100
    assert params.limit({"limit": "1"}) == 1
    assert params.limit({"limit": " 10000 "}) == MAX_LIMIT
    for bad in ("0", "10001", "-1", "1.5", "abc", "", "1e3", "0x10", "\u0661", "9" * 30):
        err = _error(params.limit, {"limit": bad})
        assert err.parameter == "limit" and err.status == 400, bad
        assert err.to_json()["parameter"] == "limit"


def test_depth() -> None:
    assert params.depth({}) == 10
    assert params.depth({"depth": "25"}) == 25
    assert _error(params.depth, {"depth": "0"}).parameter == "depth"


def test_number_rejects_non_finite() -> None:
    assert params.number({"min_bps": "2.5"}, "min_bps", 0, -10, 10) == 2.5
    for bad in ("nan", "inf", "-inf", "x", "11", "1" * 50):
        assert _error(params.number, {"min_bps": bad}, "min_bps", 0, -10, 10).parameter == "min_bps"


def test_timestamps() -> None:
    assert params.timestamp({}, "start") is None
    assert params.timestamp({"start": "1700000000"}, "start") == 1_700_000_000 * 10**9
    assert params.timestamp({"start": "1700000000.123456789"}, "start") == 1_700_000_000_123_456_789
    assert params.timestamp({"start": "2023-11-14T22:13:20Z"}, "start") == 1_700_000_000 * 10**9
    assert params.timestamp({"start": "2023-11-14T23:13:20+01:00"}, "start") == 1_700_000_000 * 10**9
    assert params.timestamp({"start": "2023-11-14T22:13:20.5"}, "start") == 1_700_000_000_500_000_000
    for bad in ("yesterday", "-5", "nan", "1e400", "99999999999", "2023-13-01", "", " ",
                "2300-01-01T00:00:00Z", "1" * 41):
        err = _error(params.timestamp, {"start": bad}, "start")
        assert err.parameter == "start" and err.status == 400, bad


def test_time_range_order_and_aliases() -> None:
    assert params.time_range({"start_time": "10", "end_time": "20"}) == (10 * 10**9, 20 * 10**9)
    assert _error(params.time_range, {"start": "20", "end": "10"}).parameter == "end"
    assert _error(params.time_range, {"start": "1", "start_time": "1"}).parameter == "start_time"


def test_interval() -> None:
    assert params.interval({}) == "1m"
    assert params.interval({"interval": "1h"}) == "1h"
    for bad in ("2m", "1M", "", "1d "):
        assert _error(params.interval, {"interval": bad}).parameter == "interval"


def test_symbol_forms_and_unknown() -> None:
    known = {"BTC-USD", "ETH-USD"}
    for text in ("BTC-USD", "btc-usd", "BTC/USD", "btc_usd"):
        assert params.symbol(text, known) == "BTC-USD"
    err = _error(params.symbol, "XRP-USD", known)
    assert (err.parameter, err.status) == ("symbol", 404)
    for bad in ("BTCUSD", "BTC-", "-USD", "BTC-USD-X", "B$C-USD", "", "A" * 40 + "-USD"):
        err = _error(params.symbol, bad, known)
        assert (err.parameter, err.status) == ("symbol", 400), bad


def test_exchange() -> None:
    known = ["coinbase", "kraken"]
    assert params.exchange(None, known, default="coinbase") == "coinbase"
    assert params.exchange("Kraken", known) == "kraken"
    assert params.exchange("all", known, allow_all=True) == "all"
    assert _error(params.exchange, "all", known).parameter == "exchange"
    assert _error(params.exchange, "binance", known).status == 400
    assert _error(params.exchange, "binance", known, status=404).status == 404
    assert _error(params.exchange, None, known).parameter == "exchange"


def test_unknown_and_repeated_names() -> None:
    assert params.check_names([("limit", "5")], ("limit",)) == {"limit": "5"}
    err = _error(params.check_names, [("limt", "5")], ("limit",))
    assert err.parameter == "limt" and "accepted: limit" in err.detail
    assert _error(params.check_names, [("limit", "5"), ("limit", "6")], ("limit",)).parameter == "limit"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_param_error(text: str) -> None:
    """No input makes a parser raise anything but ParamError (which becomes a 4xx)."""
    for call in (lambda: params.limit({"limit": text}),
                 lambda: params.depth({"depth": text}),
                 lambda: params.number({"min_bps": text}, "min_bps", 0, -1e5, 1e5),
                 lambda: params.timestamp({"start": text}, "start"),
                 lambda: params.interval({"interval": text}),
                 lambda: params.symbol(text, {"BTC-USD"}),
                 lambda: params.exchange(text, ["coinbase"], allow_all=True)):
        try:
            call()
        except ParamError as exc:
            assert 400 <= exc.status < 500 and exc.parameter
