"""TOML file + environment + command-line flags -> one validated, frozen :class:`Config`.

Precedence, lowest first: built-in defaults, the TOML file (``--config FILE.toml`` or
``ALPHAPULSE_CONFIG``), environment variables, command-line flags.  Every setting is declared
once in :data:`SETTINGS` with its TOML key, its environment variables and its parser, so the
three sources cannot drift apart.  A bad value raises :class:`~alphapulse.errors.ConfigError`
whose ``setting`` names where the value came from (``--port``, ``API_PORT``,
``server.toml: port``), which the CLI prints before exiting non-zero.

The original service's variables keep their meaning where it still applies: ``API_PORT``,
``REDIS_URL``, ``BUFFER_SIZE`` (Redis write batch size) and ``BATCH_TIMEOUT_MS`` (how long a
partial Redis batch may wait before it is flushed).
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..symbols import EXCHANGES, instrument
from .. import eventloop

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SOURCES = ("exchanges", "redis")
DEFAULT_EXCHANGES = ("coinbase", "kraken", "binanceus")
DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# --- value parsers: text or TOML value -> typed value, ValueError with a reason --------------

def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(item).strip() for item in value]
    else:
        raise ValueError(f"expected a list or a comma-separated string, got {value!r}")
    items = [item for item in items if item]
    if not items:
        raise ValueError("must name at least one item")
    return items


def _exchanges(value: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in _as_list(value):
        name = item.lower()
        if name not in EXCHANGES:
            raise ValueError(f"unknown exchange {item!r} (known: {', '.join(EXCHANGES)})")
        if name not in out:
            out.append(name)
    return tuple(out)


def _symbols(value: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in _as_list(value):
        symbol = instrument("coinbase", item).symbol   # validates BASE-QUOTE, upper-cases
        if symbol not in out:
            out.append(symbol)
    return tuple(out)


def _int_in(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            value = int(value)
        try:
            number = int(str(value).strip().replace("_", ""), 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number
    return parse


def _float_in(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
        if not low <= number <= high:   # also rejects NaN
            raise ValueError(f"must be between {low} and {high}, got {value!r}")
        return number
    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return text
    return parse


def _host(value: Any) -> str:
    text = str(value).strip()
    if not text or any(ch.isspace() for ch in text) or "/" in text:
        raise ValueError(f"not a host name or address: {value!r}")
    return text


def _url(schemes: tuple[str, ...]) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        text = str(value).strip()
        if not text:
            return None
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a {'/'.join(schemes)}:// URL with a host, got {value!r}")
        try:
            parts.port   # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"bad port in URL {value!r}") from None
        return text
    return parse


def _dir(value: Any) -> Path | None:
    text = str(value).strip()
    if not text:
        return None
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{text!r} exists and is not a directory")
    return path


def _name(value: Any) -> str:
    text = str(value).strip()
    if not _NAME_RE.match(text):
        raise ValueError(f"feed name must be 1-64 characters of letters, digits, '_', '.', '-' "
                         f"(it names files under the shm directory), got {value!r}")
    return text


def _fees(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table exchange = bps, got {value!r}")
    out = {}
    for exchange, bps in value.items():
        if exchange not in EXCHANGES:
            raise ValueError(f"unknown exchange {exchange!r} (known: {', '.join(EXCHANGES)})")
        out[exchange] = _float_in(0.0, 1000.0)(bps)
    return out


def _event_loop(value: Any) -> str:
    kind = _choice(eventloop.LOOPS)(value)
    if not eventloop.available(kind):
        raise ValueError("uvloop is not installed (pip install uvloop), or use asyncio")
    return kind


# --- the settings table -------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One setting: its Config field, TOML key (dotted for tables), env variables and flag."""

    field: str
    parse: Callable[[Any], Any]
    toml: str
    env: tuple[str, ...] = ()
    flag: str | None = None
    help: str = ""


def _s(name: str, parse: Callable[[Any], Any], toml: str | None = None, env: tuple[str, ...] = (),
       flag: str | None = None, help: str = "") -> Setting:
    return Setting(name, parse, toml or name, env, flag, help)


SETTINGS: tuple[Setting, ...] = (
    _s("exchanges", _exchanges, env=("ALPHAPULSE_EXCHANGES",), flag="--exchanges",
       help="comma-separated exchanges (coinbase,kraken,binanceus)"),
    _s("symbols", _symbols, env=("ALPHAPULSE_SYMBOLS",), flag="--symbols",
       help="comma-separated normalised symbols (BTC-USD,ETH-USD)"),
    _s("host", _host, env=("ALPHAPULSE_HOST",), flag="--host", help="HTTP/WebSocket bind address"),
    _s("port", _int_in(0, 65535), env=("API_PORT", "ALPHAPULSE_PORT"), flag="--port",
       help="HTTP/WebSocket port (0 = any free port)"),
    _s("redis_url", _url(("redis", "rediss", "unix")), env=("REDIS_URL", "ALPHAPULSE_REDIS_URL"),
       flag="--redis-url", help="also write trades and book deltas to Redis Streams at this URL"),
    _s("record_dir", _dir, toml="record", env=("ALPHAPULSE_RECORD",), flag="--record",
       help="record every raw exchange frame (JSON Lines) into this directory"),
    _s("log_level", _choice(LOG_LEVELS), env=("ALPHAPULSE_LOG_LEVEL",), flag="--log-level",
       help="logging level"),
    _s("event_loop", _event_loop, toml="loop", env=("ALPHAPULSE_LOOP",), flag="--loop",
       help="event loop: auto (uvloop if installed), asyncio or uvloop"),
    _s("demo", _bool, env=("ALPHAPULSE_DEMO",), flag="--demo",
       help="run offline against replay servers on the bundled sample captures"),
    _s("source", _choice(SOURCES), env=("ALPHAPULSE_SOURCE",), flag="--source",
       help="where market data comes from: the exchanges, or another server's Redis Streams"),
    _s("name", _name, env=("ALPHAPULSE_NAME",), flag="--name",
       help="server name: the shared-memory feed strategies attach to "
            "(alphapulse.feed.attach(NAME)) and the Redis stream prefix alphapulse:NAME"),
    _s("shm_dir", _dir, env=("ALPHAPULSE_SHM_DIR",), flag="--shm-dir",
       help="directory for the shared-memory ring files"),
    _s("processes", _int_in(1, 2), env=("ALPHAPULSE_PROCESSES",), flag="--processes",
       help="1: one process; 2: collectors in a child process joined by a ring"),
    _s("coinbase_ws_url", _url(("ws", "wss")), toml="urls.coinbase_ws",
       env=("ALPHAPULSE_COINBASE_WS_URL",), flag="--coinbase-ws-url"),
    _s("kraken_ws_url", _url(("ws", "wss")), toml="urls.kraken_ws",
       env=("ALPHAPULSE_KRAKEN_WS_URL",), flag="--kraken-ws-url"),
    _s("binanceus_ws_url", _url(("ws", "wss")), toml="urls.binanceus_ws",
       env=("ALPHAPULSE_BINANCEUS_WS_URL",), flag="--binanceus-ws-url"),
    _s("binanceus_rest_url", _url(("http", "https")), toml="urls.binanceus_rest",
       env=("ALPHAPULSE_BINANCEUS_REST_URL",), flag="--binanceus-rest-url"),
    _s("trades_per_symbol", _int_in(1, 10_000_000), toml="store.trades_per_symbol",
       env=("ALPHAPULSE_TRADES_PER_SYMBOL",)),
    _s("ws_queue_size", _int_in(8, 1_000_000), toml="websocket.queue_size",
       env=("ALPHAPULSE_WS_QUEUE_SIZE",)),
    _s("ws_send_buffer", _int_in(0, 64 << 20), toml="websocket.socket_send_buffer",
       env=("ALPHAPULSE_WS_SEND_BUFFER",)),
    _s("ws_slow_client_s", _float_in(0.1, 300.0), toml="websocket.slow_client_s",
       env=("ALPHAPULSE_WS_SLOW_CLIENT_S",)),
    _s("buffer_size", _int_in(1, 1_000_000), toml="redis.batch_size",
       env=("BUFFER_SIZE", "ALPHAPULSE_BUFFER_SIZE")),
    _s("batch_timeout_ms", _int_in(1, 60_000), toml="redis.batch_timeout_ms",
       env=("BATCH_TIMEOUT_MS", "ALPHAPULSE_BATCH_TIMEOUT_MS")),
    _s("redis_maxlen", _int_in(100, 100_000_000), toml="redis.maxlen",
       env=("ALPHAPULSE_REDIS_MAXLEN",)),
    _s("redis_buffer", _int_in(1, 10_000_000), toml="redis.outage_buffer",
       env=("ALPHAPULSE_REDIS_BUFFER",)),
    _s("redis_snapshot_s", _float_in(0.1, 86_400.0), toml="redis.snapshot_interval_s",
       env=("ALPHAPULSE_REDIS_SNAPSHOT_S",)),
    _s("stale_after_s", _float_in(0.1, 3600.0), toml="health.stale_after_s",
       env=("ALPHAPULSE_STALE_AFTER_S",)),
    _s("arb_threshold_bps", _float_in(0.0, 10_000.0), toml="arbitrage.threshold_bps",
       env=("ALPHAPULSE_ARB_THRESHOLD_BPS",)),
    _s("arb_max_age_s", _float_in(0.001, 3600.0), toml="arbitrage.max_age_s",
       env=("ALPHAPULSE_ARB_MAX_AGE_S",)),
    _s("arb_notional", _float_in(0.01, 1e12), toml="arbitrage.notional",
       env=("ALPHAPULSE_ARB_NOTIONAL",)),
    _s("arb_fees_bps", _fees, toml="arbitrage.fees_bps"),
)
_BY_FIELD = {s.field: s for s in SETTINGS}
_BY_TOML = {s.toml: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to start, validated.  Build it with :func:`load_config`."""

    exchanges: tuple[str, ...] = DEFAULT_EXCHANGES
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    host: str = "127.0.0.1"
    port: int = 3001
    redis_url: str | None = None
    record_dir: Path | None = None
    log_level: str = "info"
    event_loop: str = "auto"             # eventloop.LOOPS
    demo: bool = False
    source: str = "exchanges"
    name: str = "default"                # strategies: alphapulse.feed.attach("default", ...)
    shm_dir: Path | None = None          # None: /dev/shm (or the temp dir where there is none)
    processes: int = 1
    coinbase_ws_url: str | None = None   # None: the collector's default (the real exchange)
    kraken_ws_url: str | None = None
    binanceus_ws_url: str | None = None
    binanceus_rest_url: str | None = None
    trades_per_symbol: int = 100_000
    ws_queue_size: int = 4096
    # Kernel send buffer per client connection (SO_SNDBUF, inherited from the listening socket);
    # bounds what a stalled client can pin in the kernel before its queue overflows. 0: autotune.
    ws_send_buffer: int = 1 << 20
    # A client whose socket has not drained for this long is closed with 1008 (docs/websocket.md).
    ws_slow_client_s: float = 2.0
    buffer_size: int = 1000
    batch_timeout_ms: int = 100
    redis_maxlen: int = 1_000_000
    redis_buffer: int = 100_000
    redis_snapshot_s: float = 10.0
    stale_after_s: float = 30.0
    arb_threshold_bps: float = 0.0
    arb_max_age_s: float = 5.0
    arb_notional: float = 10_000.0
    # Taker fees in basis points per exchange, over the detector's public base-tier defaults.
    arb_fees_bps: dict[str, float] = field(default_factory=dict)

    def ws_url(self, exchange: str) -> str | None:
        """The WebSocket URL override for ``exchange`` (None: the collector's default)."""
        return getattr(self, f"{exchange}_ws_url", None)

    def rest_url(self, exchange: str) -> str | None:
        """The REST URL override for ``exchange`` (only Binance.US has one)."""
        return getattr(self, f"{exchange}_rest_url", None)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (each validated like any other value)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in changes.items():
            if key not in values:
                raise ConfigError(key, "no such setting")
            values[key] = value
        return Config(**values)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in _BY_TOML:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("--config", f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    return data


def load_config(flags: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None,
                config_file: str | os.PathLike[str] | None = None) -> Config:
    """Merge defaults, the TOML file, ``env`` and ``flags`` into one validated :class:`Config`.

    ``flags`` maps Config field names to values given on the command line (None = not given).
    ``env`` defaults to ``os.environ``; the file defaults to ``ALPHAPULSE_CONFIG`` when set.
    Raises :class:`ConfigError` naming the flag, variable or file key of the first bad value.
    """
    env = os.environ if env is None else env
    flags = dict(flags or {})
    values: dict[str, Any] = {}

    if config_file is None and env.get("ALPHAPULSE_CONFIG"):
        config_file = env["ALPHAPULSE_CONFIG"]
    if config_file is not None:
        path = Path(config_file)
        for key, raw in _flatten(_read_toml(path)).items():
            setting = _BY_TOML.get(key)
            if setting is None:
                raise ConfigError(f"{path.name}: {key}",
                                  f"unknown setting (known: {', '.join(sorted(_BY_TOML))})")
            values[setting.field] = _parse(setting, raw, f"{path.name}: {key}")

    for setting in SETTINGS:
        for var in setting.env:
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[setting.field] = _parse(setting, raw, var)
                break   # the original's name (listed first) wins over the ALPHAPULSE_ alias

    for name, raw in flags.items():
        if raw is None:
            continue
        setting = _BY_FIELD.get(name)
        if setting is None:
            raise ConfigError(name, "no such setting")
        values[name] = _parse(setting, raw, setting.flag or name)

    return _check(Config(**values))


def _parse(setting: Setting, raw: Any, origin: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(origin, str(exc)) from None


def _check(config: Config) -> Config:
    """Rules that involve more than one setting."""
    if config.demo and config.source == "redis":
        raise ConfigError("--demo", "cannot be combined with --source redis")
    if config.source == "redis" and not config.redis_url:
        raise ConfigError("--source", "redis needs --redis-url (or REDIS_URL)")
    if config.source == "redis" and config.record_dir is not None:
        raise ConfigError("--record", "records raw exchange frames; there are none with "
                                      "--source redis")
    return config
