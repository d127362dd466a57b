"""One catalog for French and English: every string is in it and translated, and each visitor gets their language."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from live_server import accounts
from tests.web.website import Site
from web import i18n

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
TRANSLATED = [lang for lang in i18n.LANGUAGES if lang != i18n.DEFAULT_LANGUAGE]  # English is the msgids themselves
# The go-live panel, whose owner polishes it in a later pass: every other template must have no
# text outside the catalog. Remove a name once its template is translated.
NOT_YET_TRANSLATED: set[str] = set()


def _method_map() -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    """babel.cfg, read the way ``pybabel extract -F babel.cfg`` reads it."""
    try:
        from babel.messages.frontend import parse_mapping_cfg as parse
    except ImportError:  # Babel < 2.14
        from babel.messages.frontend import parse_mapping as parse  # type: ignore[attr-defined,no-redef]
    with (REPO / "babel.cfg").open() as fp:
        return parse(fp)


def _extracted() -> set[str | tuple[str, ...]]:
    method_map, options_map = _method_map()
    found: set[str | tuple[str, ...]] = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(str(WEB), method_map, options_map):
        found.add(message)  # a str, or (singular, plural) as in the catalog
    return found


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_string_of_the_interface_is_translated(lang: str) -> None:
    po = WEB / "translations" / lang / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fp:
        catalog = read_po(fp, locale=lang)
    extracted = _extracted()
    assert len(extracted) > 150
    in_catalog = {m.id for m in catalog if m.id}
    missing = sorted(str(m) for m in extracted if m not in in_catalog)
    assert not missing, f"strings not in {po} (run `make messages` and translate them): {missing}"
    untranslated = [m.id for m in catalog if m.id and (not m.string or (isinstance(m.string, tuple) and not all(m.string)))]
    assert not untranslated, f"untranslated: {untranslated}"
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy (check, then remove the flag): {fuzzy}"
    stale = sorted(str(m.id) for m in catalog if m.id and m.id not in extracted)
    assert not stale, f"no longer used (run `make messages`): {stale}"
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert not problems, f"placeholders differ between English and {lang}: {problems}"


def test_french_is_offered_and_the_server_loads_its_catalog(tmp_path: Path) -> None:
    assert "fr" in TRANSLATED
    # where `make` has not built the .mo (or the .po is newer), the .po is compiled in memory
    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_bytes((WEB / "translations" / "fr" / "LC_MESSAGES" / "messages.po").read_bytes())
    assert i18n.Catalogs(tmp_path).get("fr").gettext("Wrong password.") == "Mot de passe incorrect."
    catalogs = i18n.Catalogs()
    assert catalogs.get("fr").gettext("Skip to content") == "Aller au contenu"
    assert catalogs.get("fr").ngettext("%(num)s viewer", "%(num)s viewers", 2) == "%(num)s spectateurs"
    assert catalogs.get("en").gettext("Skip to content") == "Skip to content"
    assert catalogs.get("de").gettext("Skip to content") == "Skip to content"  # not offered: English


_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_TRANS_BLOCK = re.compile(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", re.S)
_JINJA_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_GETTEXT_CALL = re.compile(r"""\b(?:_|gettext|ngettext)\(\s*("[^"]*"|'[^']*')(\s*,\s*("[^"]*"|'[^']*'))?""")
_LITERAL = re.compile(r""""([^"]*)"|'([^']*)'""")
_WORDS = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")
_LETTER = re.compile(r"[A-Za-zÀ-ÿ]")
_ATTRIBUTE_TEXT = re.compile(r"""[\w-]+=("[^"]*"|'[^']*')""")  # attributes a macro writes into a tag
TEXT_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description", "label", "data-confirm", "data-copied"}


class _TextFinder(HTMLParser):
    """Text a person would read (element text, labelling attributes) left in a template once Jinja is removed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._raw = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._raw += 1
        for name, value in attrs:
            shown = name in TEXT_ATTRIBUTES or name.startswith("data-msg-") or (
                name == "value" and dict(attrs).get("type") in ("submit", "button", "reset"))
            if shown and value and _LETTER.search(value):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._raw = max(0, self._raw - 1)

    def handle_data(self, data: str) -> None:
        if not self._raw and _LETTER.search(_ATTRIBUTE_TEXT.sub("", data)):
            self.found.append(data.strip())


def hard_coded_text(source: str) -> list[str]:
    """English (or any words) in a template that would not go through the catalog."""
    source = _TRANS_BLOCK.sub("", _JINJA_COMMENT.sub("", source))
    problems = []
    for code in _JINJA_CODE.findall(source):  # words in string literals that are not gettext calls
        for literal in _LITERAL.findall(_GETTEXT_CALL.sub("", code)):
            text = literal[0] or literal[1]
            if _WORDS.search(text):
                problems.append(f"literal {text!r}")
    finder = _TextFinder()
    finder.feed(_JINJA_CODE.sub(" ", source))
    return problems + finder.found


def test_the_text_finder_catches_what_it_should() -> None:
    assert hard_coded_text('<p>{{ _("Fine") }}</p><button title="Close me">x</button>') == ["<button title='Close me'>", "x"]
    assert hard_coded_text("<p>{{ {'live': 'Live now.'}[state] }}</p>") == ["literal 'Live now.'"]
    assert hard_coded_text('<script>var a = "words here";</script>{% trans %}Hello there{% endtrans %}') == []


def test_templates_have_no_text_outside_the_catalog() -> None:
    templates = sorted((WEB / "templates").glob("**/*.html"))
    assert len(templates) > 10
    problems = {t.name: found for t in templates if t.name not in NOT_YET_TRANSLATED
                and (found := hard_coded_text(t.read_text()))}
    assert not problems, f"hard-coded text (wrap it in _() and run `make messages`): {problems}"


@pytest.mark.parametrize(("profile", "cookie", "header", "expected"), [
    (None, None, "", "en"),
    (None, None, "fr-CA,fr;q=0.9,en;q=0.8", "fr"),
    (None, None, "de-DE,de;q=0.9,fr;q=0.5,en;q=0.4", "fr"),  # first language we have, in their order
    (None, None, "en;q=0.2, fr;q=0.9", "fr"),  # by quality, not position
    (None, None, "fr;q=0, en", "en"),  # q=0 means "not this one"
    (None, None, "*;q=0.5, garbage;;q=x", "en"),
    (None, "fr", "en-US", "fr"),  # the switcher's cookie beats the browser
    ("en", "fr", "fr", "en"),  # the profile beats both
    ("xx", None, "fr", "fr"),  # an unknown profile value is ignored
])
def test_the_language_is_the_users_choice_else_the_browsers_else_english(
        profile: str | None, cookie: str | None, header: str, expected: str) -> None:
    assert i18n.choose_language(profile, cookie, header) == expected


async def test_accept_language_french_gets_the_french_page(site: Site) -> None:
    resp = await site.client.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    page = await resp.text()
    assert '<html lang="fr">' in page
    assert "Rien n’est en direct pour le moment." in page and "Aller au contenu" in page
    resp = await site.client.get("/login", headers={"Accept-Language": "en-GB"})
    page = await resp.text()
    assert '<html lang="en">' in page and ">Log in</h1>" in page


async def test_the_profile_language_overrides_the_browser_and_the_switcher_sets_it(site: Site) -> None:
    english_speaker = site.account("viewer", language="en")
    await site.log_in(english_speaker)
    page = await (await site.client.get("/", headers={"Accept-Language": "fr"})).text()
    assert '<html lang="en">' in page and "Nothing is live right now." in page

    # the switcher in the header: for a logged-in person it changes the profile
    resp = await site.submit("/", "/language", {"language": "fr", "next": "/profile"})
    assert resp.status == 303 and resp.headers["Location"] == "/profile"
    assert site.db.transaction(lambda s: s.get(accounts.User, english_speaker.id).language) == "fr"
    page = await (await site.client.get("/profile", headers={"Accept-Language": "en"})).text()
    assert '<html lang="fr">' in page and "Langue du site" in page

    # the profile form: "Automatic" clears the choice, and the browser decides again
    resp = await site.submit("/profile", "/profile", {"display_name": "Ada", "language": ""})
    assert resp.status == 303
    page = await (await site.client.get("/profile", headers={"Accept-Language": "en"})).text()
    assert '<html lang="en">' in page and 'value="Ada"' in page


async def test_anonymous_visitors_switch_with_a_cookie_and_bad_targets_stay_on_site(site: Site) -> None:
    resp = await site.submit("/", "/language", {"language": "fr", "next": "//evil.example/"})
    assert resp.status == 303 and resp.headers["Location"] == "/"
    page = await (await site.client.get("/", headers={"Accept-Language": "en"})).text()
    assert '<html lang="fr">' in page
    resp = await site.submit("/", "/language", {"language": "klingon", "next": "/"})
    assert resp.status == 303
    assert '<html lang="fr">' in await (await site.client.get("/")).text()  # unchanged


async def test_dates_are_written_in_the_visitors_language_and_time_zone(site: Site) -> None:
    from datetime import datetime, timezone

    lecturer = site.account("lecturer")
    site.event(lecturer, title="Morning lecture", scheduled_start=datetime(2031, 3, 4, 8, 30, tzinfo=timezone.utc))
    site.client.session.cookie_jar.update_cookies({"live_tz": "Europe/Paris"})
    page = await (await site.client.get("/", headers={"Accept-Language": "fr"})).text()
    assert "mar. 4 mars 2031 09:30 (Europe/Paris)" in page
    site.client.session.cookie_jar.update_cookies({"live_tz": "Not/AZone"})
    page = await (await site.client.get("/", headers={"Accept-Language": "en"})).text()
    assert "Tue, Mar 4, 2031 8:30\u202fAM UTC" in page or "Tue, Mar 4, 2031 8:30 AM UTC" in page
