"""Caption fixtures: the Korean Vosk test model, espeak-ng speech and a captioned app (tests/captions/speech.py),
and the model loaded once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.captions.speech import captioned, ko_model, ko_registry, ko_speech  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def ko_loaded(ko_registry: Any) -> Any:
    """The test model loaded once for the whole session (a LoadedModel)."""
    return ko_registry.get("ko")
