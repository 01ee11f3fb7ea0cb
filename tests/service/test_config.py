"""Settings from GRADBOOK_* variables: one parser for every settings class, typed by its fields."""

from __future__ import annotations

import math

import pytest

from service.config import DEFAULT_DATABASE_URL, ServerSettings, Settings, database_url


def test_each_field_reads_its_variable_with_the_fields_type():
    env = {"GRADBOOK_MAX_STEPS": "1_000", "GRADBOOK_WRITER_PROCESS_AFTER": "inf",
           "GRADBOOK_FLUSH_SECONDS": " 0.25 ", "GRADBOOK_MAX_UNITS": ""}
    s = Settings.from_env(env)
    assert s.max_steps == 1000 and math.isinf(s.writer_process_after) and s.flush_seconds == 0.25
    assert s.max_units == Settings().max_units  # blank: the default


def test_server_settings_read_the_same_way_and_overrides_win():
    env = {"GRADBOOK_PORT": "0", "GRADBOOK_EXECUTOR": "thread", "GRADBOOK_WORKERS": "4",
           "GRADBOOK_DATABASE_URL": "sqlite:///env.db", "GRADBOOK_API_TOKEN": " "}
    s = ServerSettings.from_env(env, workers=2, host=None)
    assert (s.port, s.executor, s.workers, s.api_token) == (0, "thread", 2, None)
    assert s.database_url == "sqlite:///env.db" and s.host == "127.0.0.1"


@pytest.mark.parametrize("cls, env, message", [
    (Settings, {"GRADBOOK_MAX_STEPS": "many"}, "GRADBOOK_MAX_STEPS: expected an integer, got 'many'"),
    (Settings, {"GRADBOOK_MAX_STEPS": "0"}, "GRADBOOK_MAX_STEPS: expected a positive integer, got 0"),
    (Settings, {"GRADBOOK_FLUSH_SECONDS": "nan"}, "GRADBOOK_FLUSH_SECONDS: expected a positive number"),
    (ServerSettings, {"GRADBOOK_WORKERS": "1.5"}, "GRADBOOK_WORKERS: expected an integer, got '1.5'"),
    (ServerSettings, {"GRADBOOK_PORT": "-1"}, "GRADBOOK_PORT: expected an integer of at least 0, got -1"),
    (ServerSettings, {"GRADBOOK_EXECUTOR": "cluster"}, "GRADBOOK_EXECUTOR: expected one of process, thread"),
])
def test_errors_name_the_variable_and_what_was_expected(cls, env, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        cls.from_env(env)


def test_settings_made_in_code_are_checked_too():
    with pytest.raises(ValueError, match="GRADBOOK_WORKERS: expected a positive integer, got True"):
        ServerSettings(workers=True)
    with pytest.raises(ValueError, match="GRADBOOK_RECOVER_SECONDS"):
        ServerSettings(recover_seconds=0)
    assert ServerSettings(recover_seconds=2).recover_seconds == 2


def test_database_url_explicit_then_environment_then_default():
    assert database_url(environ={}) == DEFAULT_DATABASE_URL
    assert database_url(environ={"GRADBOOK_DATABASE_URL": "sqlite:///env.db"}) == "sqlite:///env.db"
    assert database_url("sqlite:///x.db", environ={"GRADBOOK_DATABASE_URL": "sqlite:///env.db"}) == "sqlite:///x.db"
