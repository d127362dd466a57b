"""The deployment files ship working: valid settings everywhere, nginx accepts its config, dashboards
and alerts only name metrics the app exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from live_server.settings import Settings, load_settings
from tests.nginx import MAIN_CONF, nginx_binary, render

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV_NAME = re.compile(r"\bLIVE_[A-Z0-9_]+")
NOT_SETTINGS = {"LIVE_CONFIG", "LIVE_LISTEN", "LIVE_WEB_SERVERS", "LIVE_MEDIA_DIR",  # the rest: nginx template
                "LIVE_TLS_LISTEN", "LIVE_TLS_CERTIFICATE", "LIVE_TLS_CERTIFICATE_KEY", "LIVE_NGINX_CACHE_DIR"}


def test_every_live_variable_in_the_deploy_files_is_a_setting() -> None:
    fields = {f"LIVE_{name.upper()}" for name in Settings.model_fields}
    files = [DEPLOY / "docker-compose.yml", DEPLOY / "Dockerfile", *sorted((DEPLOY / "systemd").iterdir())]
    for path in files:
        names = set(ENV_NAME.findall(path.read_text())) - NOT_SETTINGS
        assert names <= fields, f"{path.name}: unknown settings {sorted(names - fields)}"


def test_compose_services_have_valid_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web1", "web2", "ingest", "postgres", "redis", "nginx", "migrate"} <= set(services)
    roles = {}
    for name in ("web1", "web2", "ingest", "migrate"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = load_settings(environ=env)  # raises on any invalid value
        roles[name] = settings.role
        assert settings.effective_database_url.startswith("postgresql") and settings.redis_url
    assert roles["web1"] == roles["web2"] == "web" and roles["ingest"] == "ingest"
    nginx_env = services["nginx"]["environment"]
    for web in ("web1", "web2"):
        assert f"server {web}:8080;" in nginx_env["LIVE_WEB_SERVERS"]


def test_nginx_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    binary = nginx_binary()
    (tmp_path / "live.conf").write_text(render("127.0.0.1:8099", ["127.0.0.1:8081", "127.0.0.1:8082"], tmp_path, tmp_path))
    (tmp_path / "nginx.conf").write_text(MAIN_CONF.format(work=tmp_path, user=""))
    result = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _exported_metric_names(settings: Settings) -> set[str]:
    """Every series name of a fully wired app (components register their metrics when attached)."""
    from live_server.app import create_app
    from live_server.metrics import METRICS

    names: set[str] = set()
    for metric in create_app(settings)[METRICS].registry.collect():
        names.add(metric.name)
        for sample in metric.samples:
            names.add(sample.name)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names.update(metric.name + s for s in ("_bucket", "_sum", "_count"))
    return names


@pytest.mark.parametrize("path", ["prometheus/alerts.yml", "grafana/live-server.json"])
def test_monitoring_files_name_only_exported_metrics(path: str, settings: Settings) -> None:
    text = (DEPLOY / path).read_text()
    if path.endswith(".json"):
        exprs = [t["expr"] for panel in json.loads(text)["panels"] for t in panel.get("targets", [])]
        text = "\n".join(exprs)
        assert exprs, "the dashboard has no queries"
    used = set(re.findall(r"\blive_[a-z0-9_]+", text))
    assert used, "no live_* metric referenced"
    missing = used - _exported_metric_names(settings)
    assert not missing, f"{path} names metrics the app does not export: {sorted(missing)}"


def test_the_readme_names_counters_as_they_are_exported(settings: Settings) -> None:
    """Prometheus exports a counter ``x`` as ``x_total``: the README names the series an operator finds in /metrics."""
    from live_server.app import create_app
    from live_server.metrics import METRICS

    counters = {m.name for m in create_app(settings)[METRICS].registry.collect() if m.type == "counter"}
    named = set(re.findall(r"`(live_[a-z0-9_]+)", (DEPLOY.parent / "README.md").read_text()))
    assert counters and named
    assert not named & counters, f"README names counters without their _total suffix: {sorted(named & counters)}"
