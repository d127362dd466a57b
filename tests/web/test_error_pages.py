"""Errors as a browser meets them: a 404 page in the visitor's language, while other
clients keep what they had: JSON for the API, plain text for a client that does not ask for HTML."""

from __future__ import annotations

from tests.web.website import Site

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_a_browser_gets_pages_other_clients_what_they_had(site: Site) -> None:
    page = await site.client.get("/events/no-such-event", headers={**HTML, "Accept-Language": "fr-FR,fr;q=0.9"})
    assert page.status == 404 and page.content_type == "text/html"
    text = await page.text()
    assert '<html lang="fr">' in text and "<title>Erreur : Page introuvable · Cours en direct</title>" in text
    assert '<a href="/">Retour à l’accueil</a>' in text
    assert "default-src" in page.headers["Content-Security-Policy"]

    plain = await site.client.get("/events/no-such-event")  # curl, a script: as before
    assert plain.status == 404 and plain.content_type == "text/plain"
    api = await site.client.get("/api/v1/recordings/zzzz", headers=HTML)
    assert api.status == 404 and (await api.json())["error"]["code"] == "not_found"
    media = await site.client.get("/live/no-such-event/master.m3u8", headers=HTML)
    assert media.status == 404 and media.content_type != "text/html"
