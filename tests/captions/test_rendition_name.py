"""The live caption rendition's NAME in the master playlist: the language's own name, never a bare code."""

from __future__ import annotations

import pytest

from live_server.languages import own_name


@pytest.mark.parametrize("code, name", [
    ("ko", "한국어"), ("fr", "Français"), ("en", "English"), ("de", "Deutsch"), ("pt-BR", "Português (Brasil)"),
    ("xx", "xx"),  # unknown to CLDR: the code, rather than nothing
])
def test_the_rendition_is_named_in_its_own_language(code: str, name: str) -> None:
    assert own_name(code) == name
