"""Settings added for operation: parsing and start-up checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gramlogs.core.config import Config, ConfigError, settings_environment


def test_defaults_leave_rate_limiting_off_and_the_access_log_on():
    config = Config.load({})
    assert (config.rate_limit, config.access_log) == (0.0, True)
    assert (config.max_url_bytes, config.max_header_bytes) == (8192, 16384)
    assert (config.header_timeout_s, config.body_timeout_s, config.shutdown_timeout_s) == (
        10.0,
        60.0,
        15,
    )


@pytest.mark.parametrize(("raw", "value"), [("0", False), ("false", False), ("Off", False)])
def test_booleans_parse(raw, value):
    assert Config.load({"GRAMLOGS_ACCESS_LOG": raw}).access_log is value
    assert Config.load({"GRAMLOGS_ACCESS_LOG": "yes"}).access_log is True


def test_a_bad_boolean_names_the_variable():
    with pytest.raises(ConfigError, match="GRAMLOGS_ACCESS_LOG='maybe' is not a boolean"):
        Config.load({"GRAMLOGS_ACCESS_LOG": "maybe"})


def test_rate_limit_takes_fractions():
    config = Config.load({"GRAMLOGS_RATE_LIMIT": "0.5", "GRAMLOGS_RATE_LIMIT_BURST": "3"})
    assert (config.rate_limit, config.rate_limit_burst) == (0.5, 3)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRAMLOGS_RATE_LIMIT": "-1"}, "GRAMLOGS_RATE_LIMIT must be at least 0, got -1.0"),
        ({"GRAMLOGS_MAX_URL_BYTES": "0"}, "GRAMLOGS_MAX_URL_BYTES must be at least 1, got 0"),
        ({"GRAMLOGS_ACQUIRE_TIMEOUT_MS": "0"}, "GRAMLOGS_ACQUIRE_TIMEOUT_MS must be at least 1"),
        ({"GRAMLOGS_HEADER_TIMEOUT_S": "0"}, "GRAMLOGS_HEADER_TIMEOUT_S must be more than 0"),
        ({"GRAMLOGS_BODY_TIMEOUT_S": "x"}, "GRAMLOGS_BODY_TIMEOUT_S='x' is not a valid float"),
    ],
)
def test_bad_values_fail_at_start_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Config.load(env)


def test_settings_travel_through_the_environment_unchanged() -> None:
    """What `serve --workers N` hands its workers: every setting, flags included."""
    config = Config.load(
        environ={},
        overrides={"rate_limit": 2.5, "access_log": False, "port": 9999, "data_dir": Path("/x")},
    )
    assert Config.load(environ=settings_environment(config)) == config
