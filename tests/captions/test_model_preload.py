"""A node that captions loads its configured speech models when it starts (``vosk_preload``), so the first
captioned lecture after a start is captioned from its first words; a model that cannot load is said at start."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

import pytest

from captions.vosk_models import ModelRegistry, ModelUnavailable
from live_server.app import create_app
from live_server.settings import Settings


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "at-first-use"])
async def test_configured_models_load_when_the_node_starts(
        aiohttp_client: Any, make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str],
        ko_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, preload: bool) -> None:
    settings = make_settings(database_url=migrated_sqlite("live.db"), vosk_preload=preload,
                             vosk_models={"ko": str(ko_model), "fr": str(tmp_path / "no-such-model")})
    registry = ModelRegistry(dict(settings.vosk_models))  # this app's own: nothing loaded before it starts
    caplog.set_level(logging.ERROR, logger="captions.vosk_models")
    await aiohttp_client(create_app(settings, models=registry))
    if not preload:
        assert registry.loaded_languages() == [] and "unusable" not in caplog.text
        return
    for _ in range(600):  # no publish, no request: the start alone loads them (seconds on a busy machine)
        if registry.loaded_languages() == ["ko"] and "model for fr unusable" in caplog.text:
            break
        await asyncio.sleep(0.1)
    assert registry.loaded_languages() == ["ko"]
    assert "model for fr unusable" in caplog.text and "no-such-model" in caplog.text
    with pytest.raises(ModelUnavailable):  # the failure is remembered, not retried at each publish
        registry.get("fr")
