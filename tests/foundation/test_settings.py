"""Settings precedence (defaults → file → environment), validation messages, masking, the shipped example."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from live_server.settings import Settings, SettingsError, load_settings
from tests.processes import cli_in_process

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings(environ={})
    assert s.effective_database_url == "sqlite:///var/live.db"
    assert s.media_dir == Path("var/media")
    assert s.redis_url == "" and s.role == "both"
    assert (s.host, s.port, s.rtmp_port, s.segment_seconds, s.grace_period_seconds) == ("127.0.0.1", 8080, 1935, 2.0, 60.0)


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "live.toml"
    toml.write_text('port = 9000\nsegment_seconds = 4\nlog_level = "debug"\n')
    s = load_settings(toml, environ={"LIVE_PORT": "9100"})
    assert s.port == 9100  # environment wins over the file
    assert s.segment_seconds == 4.0  # file wins over the default
    assert s.log_level == "DEBUG"

    yaml_file = tmp_path / "live.yaml"
    yaml_file.write_text("live:\n  grace_period_seconds: 5\n  vosk_models: {fr: /srv/fr}\n")
    s = load_settings(environ={"LIVE_CONFIG": str(yaml_file), "LIVE_VOSK_MODELS": "fr=/m/fr,en=/m/en"})
    assert s.grace_period_seconds == 5.0
    assert s.vosk_models == {"fr": Path("/m/fr"), "en": Path("/m/en")}


def test_postgres_and_redis_by_environment_only() -> None:
    s = load_settings(environ={"LIVE_DATABASE_URL": "postgresql+psycopg://u:pw@db/live", "LIVE_REDIS_URL": "redis://r:6379/0"})
    assert s.effective_database_url.startswith("postgresql+psycopg://")
    assert s.redis_url == "redis://r:6379/0"
    masked = s.masked()
    assert "pw" not in json.dumps(masked)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LIVE_PORT": "eighty"}, "port (env LIVE_PORT): Input should be a valid integer"),
        ({"LIVE_PORT": "70000"}, "port (env LIVE_PORT): Input should be less than or equal to 65535"),
        ({"LIVE_SEGMENT_SECONDS": "0.1"}, "segment_seconds (env LIVE_SEGMENT_SECONDS): Input should be greater than or equal to 0.5"),
        ({"LIVE_DATABASE_URL": "mysql://x"}, "only sqlite:/// and postgresql+psycopg:// URLs are supported"),
        ({"LIVE_REDIS_URL": "localhost:6379"}, "must start with redis://"),
        ({"LIVE_VOSK_MODELS": "fr"}, "expected key=value pairs"),
        ({"LIVE_PROT": "1"}, "unknown setting LIVE_PROT"),
    ],
)
def test_validation_errors_are_readable(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ=environ)
    assert expected in str(err.value)


def test_ll_hls_is_the_default_with_recordings_and_can_be_turned_off() -> None:
    """Every live event is LL-HLS unless the operator says otherwise; recordings are made of its fMP4
    segments, so both on is the default configuration, and ``ll_hls = false`` brings back plain HLS."""
    s = load_settings(environ={})
    assert s.ll_hls and s.recording_enabled
    assert not load_settings(environ={"LIVE_LL_HLS": "false"}).ll_hls


def test_bad_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 3")
    with pytest.raises(SettingsError, match="is not valid"):
        load_settings(bad, environ={})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match=r"colour \(env LIVE_COLOUR\): unknown setting"):
        load_settings(unknown, environ={})


def test_example_config_matches_defaults() -> None:
    """deploy/live.example.toml documents every setting with its default value, commented or not."""
    import tomllib

    text = (REPO / "deploy" / "live.example.toml").read_text()
    uncommented = "\n".join(line.removeprefix("# ") for line in text.splitlines() if not line.startswith("##"))
    data = tomllib.loads(uncommented)
    assert set(data) == set(Settings.model_fields), "example config must list every setting"
    assert Settings.model_validate(data) == load_settings(environ={})


def test_config_command_masks_secrets(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "LIVE_SECRET_KEY": "supersecretvalue",
        "LIVE_DATABASE_URL": "postgresql+psycopg://live:hunter2@db/live",
    }
    out = cli_in_process(env, "config", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["secret_key"] == "********"
    assert "hunter2" not in out.stdout and "supersecretvalue" not in out.stdout
    assert data["database_url"] == "postgresql+psycopg://live:********@db/live"
    # the operational limits are settings like the rest, shown with their defaults
    assert {name: data[name] for name in (
        "import_segment_seconds", "media_cache_mb", "media_directory_ttl_seconds", "media_directory_miss_ttl_seconds",
        "chat_room_ttl_seconds", "chat_history_ttl_seconds", "chat_fanout_max_bytes", "chat_fanout_max_packets",
        "db_workers", "media_decision_cache_seconds", "ll_hls")} == {
        "import_segment_seconds": 4.0, "media_cache_mb": 256, "media_decision_cache_seconds": 5, "media_directory_ttl_seconds": 2.0,
        "media_directory_miss_ttl_seconds": 0.5, "chat_room_ttl_seconds": 2.0, "chat_history_ttl_seconds": 2.0,
        "chat_fanout_max_bytes": 262144, "chat_fanout_max_packets": 64, "db_workers": 4, "ll_hls": True}

    bad = cli_in_process({**env, "LIVE_PORT": "x"}, "config", cwd=tmp_path)
    assert bad.returncode == 2 and "LIVE_PORT" in bad.stderr and "Traceback" not in bad.stderr


def test_nginx_keeps_a_media_decision_less_than_a_watch_time_slot() -> None:
    """Watch time is counted from the app's media decisions, which nginx keeps media_decision_cache_seconds."""
    behind_nginx = {"LIVE_MEDIA_ACCEL_REDIRECT": "/_media/"}
    with pytest.raises(SettingsError, match=r"media_decision_cache_seconds \(10\) must be shorter than audience_slot"):
        load_settings(environ={**behind_nginx, "LIVE_MEDIA_DECISION_CACHE_SECONDS": "10"})
    assert load_settings(environ={**behind_nginx, "LIVE_MEDIA_DECISION_CACHE_SECONDS": "10",
                                  "LIVE_AUDIENCE_SLOT_SECONDS": "12"}).media_decision_cache_seconds == 10
    assert load_settings(environ={**behind_nginx, "LIVE_MEDIA_DECISION_CACHE_SECONDS": "0",
                                  "LIVE_AUDIENCE_SLOT_SECONDS": "1"}).media_decision_cache_seconds == 0
    # On its own (no nginx keeping decisions) a one-second slot is fine whatever the setting says.
    assert load_settings(environ={"LIVE_AUDIENCE_SLOT_SECONDS": "1"}).audience_slot_seconds == 1
