"""Config: defaults, TOML < env < flags precedence, and bad values naming their setting."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alphapulse.errors import ConfigError
from alphapulse.server.cli import EXIT_CONFIG, main, parse_config
from alphapulse.server.config import Config, load_config


def test_defaults_are_the_embedded_service() -> None:
    config = load_config({}, env={})
    assert config.exchanges == ("coinbase", "kraken", "binanceus")
    assert config.symbols == ("BTC-USD", "ETH-USD")
    assert config.port == 3001
    assert config.redis_url is None          # nothing external to start
    assert config.source == "exchanges"
    assert config.record_dir is None
    assert config.trades_per_symbol >= 100_000
    assert config.ws_url("kraken") is None
    with pytest.raises(Exception):
        config.port = 1  # type: ignore[misc]   # frozen


def test_original_environment_variables() -> None:
    env = {"API_PORT": "8080", "REDIS_URL": "redis://10.0.0.5:6380/2", "BUFFER_SIZE": "250",
           "BATCH_TIMEOUT_MS": "40", "ALPHAPULSE_KRAKEN_WS_URL": "ws://127.0.0.1:9000",
           "ALPHAPULSE_BINANCEUS_REST_URL": "http://127.0.0.1:9001",
           "ALPHAPULSE_COINBASE_WS_URL": "wss://example.test/ws",
           "ALPHAPULSE_BINANCEUS_WS_URL": "ws://127.0.0.1:9002/ws"}
    config = load_config({}, env=env)
    assert (config.port, config.redis_url, config.buffer_size, config.batch_timeout_ms) == (
        8080, "redis://10.0.0.5:6380/2", 250, 40)
    assert config.ws_url("kraken") == "ws://127.0.0.1:9000"
    assert config.ws_url("coinbase") == "wss://example.test/ws"
    assert config.ws_url("binanceus") == "ws://127.0.0.1:9002/ws"
    assert config.rest_url("binanceus") == "http://127.0.0.1:9001"
    assert config.rest_url("kraken") is None


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "server.toml"
    toml.write_text('port = 4000\nsymbols = ["eth-usd"]\nexchanges = "kraken"\n'
                    'log_level = "debug"\n[urls]\nkraken_ws = "ws://127.0.0.1:1"\n'
                    '[store]\ntrades_per_symbol = 500\n[arbitrage]\nthreshold_bps = 5\n'
                    'fees_bps = { kraken = 26, coinbase = 40 }\n')
    config = load_config({}, env={}, config_file=toml)
    assert config.port == 4000 and config.symbols == ("ETH-USD",)
    assert config.exchanges == ("kraken",) and config.log_level == "debug"
    assert config.kraken_ws_url == "ws://127.0.0.1:1" and config.trades_per_symbol == 500
    assert config.arb_threshold_bps == 5.0 and config.arb_fees_bps == {"kraken": 26.0,
                                                                         "coinbase": 40.0}
    config = load_config({}, env={"API_PORT": "5000"}, config_file=toml)
    assert config.port == 5000
    config = load_config({"port": "6000"}, env={"API_PORT": "5000"}, config_file=toml)
    assert config.port == 6000
    # ALPHAPULSE_CONFIG names the file when --config does not.
    assert load_config({}, env={"ALPHAPULSE_CONFIG": str(toml)}).port == 4000


@pytest.mark.parametrize("flags, env, setting", [
    ({"port": "70000"}, {}, "--port"),
    ({"port": "http"}, {}, "--port"),
    ({}, {"API_PORT": "-1"}, "API_PORT"),
    ({}, {"BUFFER_SIZE": "0"}, "BUFFER_SIZE"),
    ({}, {"BATCH_TIMEOUT_MS": "fast"}, "BATCH_TIMEOUT_MS"),
    ({"exchanges": "coinbase,ftx"}, {}, "--exchanges"),
    ({"symbols": "BTCUSD"}, {}, "--symbols"),
    ({"symbols": ","}, {}, "--symbols"),
    ({"redis_url": "http://localhost:6379"}, {}, "--redis-url"),
    ({}, {"REDIS_URL": "redis://host:99999"}, "REDIS_URL"),
    ({"kraken_ws_url": "localhost:9000"}, {}, "--kraken-ws-url"),
    ({}, {"ALPHAPULSE_BINANCEUS_REST_URL": "ws://x"}, "ALPHAPULSE_BINANCEUS_REST_URL"),
    ({"log_level": "loud"}, {}, "--log-level"),
    ({"event_loop": "trio"}, {}, "--loop"),
    ({"source": "kafka"}, {}, "--source"),
    ({"name": "../etc/passwd"}, {}, "--name"),
    ({"source": "redis"}, {}, "--source"),                 # needs a Redis URL
    ({"demo": True, "source": "redis", "redis_url": "redis://h"}, {}, "--demo"),
    ({}, {"ALPHAPULSE_STALE_AFTER_S": "nan"}, "ALPHAPULSE_STALE_AFTER_S"),
])
def test_bad_values_name_their_setting(flags: dict, env: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(flags, env=env)
    assert info.value.setting == setting
    assert str(info.value).startswith(setting)


def test_bad_toml_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config({}, env={}, config_file=bad)
    assert info.value.setting == "--config"
    typo = tmp_path / "typo.toml"
    typo.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting") as info:
        load_config({}, env={}, config_file=typo)
    assert info.value.setting == "typo.toml: prot"
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[store]\ntrades_per_symbol = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config({}, env={}, config_file=wrong)
    assert info.value.setting == "wrong.toml: store.trades_per_symbol"
    with pytest.raises(ConfigError, match="file not found"):
        load_config({}, env={}, config_file=tmp_path / "missing.toml")


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from alphapulse import eventloop
    assert load_config({}, env={}).event_loop == "auto"
    assert load_config({}, env={"ALPHAPULSE_LOOP": "asyncio"}).event_loop == "asyncio"
    assert eventloop.resolve("auto") == "uvloop"          # a dependency on Linux
    # Without uvloop: auto falls back to asyncio, and asking for uvloop is a named error.
    monkeypatch.setattr(eventloop.importlib.util, "find_spec", lambda name: None)
    assert eventloop.resolve("auto") == "asyncio"
    with pytest.raises(ConfigError, match="uvloop is not installed") as info:
        load_config({"event_loop": "uvloop"}, env={})
    assert info.value.setting == "--loop"


def test_eventloop_run_uses_the_named_loop() -> None:
    import asyncio

    from alphapulse import eventloop

    async def which() -> tuple[str, str]:
        return type(asyncio.get_running_loop()).__module__.split(".")[0], eventloop.running()

    assert eventloop.run(which(), "uvloop") == ("uvloop", "uvloop")
    assert eventloop.run(which(), "asyncio") == ("asyncio", "asyncio")


def test_record_path_must_be_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config({"record_dir": str(file)}, env={})
    assert info.value.setting == "--record"
    assert load_config({"record_dir": str(tmp_path)}, env={}).record_dir == tmp_path


def test_cli_flags_map_to_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("ALPHAPULSE_") or var in ("API_PORT", "REDIS_URL"):
            monkeypatch.delenv(var)
    config = parse_config(["--exchanges", "kraken,coinbase", "--symbols", "eth-usd", "--port", "0",
                           "--host", "::1", "--demo", "--log-level", "WARNING", "--name", "feed1",
                           "--binanceus-rest-url", "http://127.0.0.1:1/"])
    assert isinstance(config, Config)
    assert config.exchanges == ("kraken", "coinbase") and config.symbols == ("ETH-USD",)
    assert (config.port, config.host, config.demo, config.log_level, config.name) == (
        0, "::1", True, "warning", "feed1")
    assert config.binanceus_rest_url == "http://127.0.0.1:1/"
    assert parse_config([]).demo is False


def test_cli_bad_value_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "99999"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--port" in err and "65535" in err


def test_console_script_version_and_error() -> None:
    """The real entry point, in a fresh interpreter: --version, and a bad env value."""
    code = "import sys; from alphapulse.server.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "alphapulse-server" in out.stdout
    env = dict(os.environ, API_PORT="abc")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, env=env)
    assert out.returncode == EXIT_CONFIG
    assert "API_PORT" in out.stderr and "integer" in out.stderr
