"""`live-server`: run the server and administer the catalog from a shell."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Sequence

from live_server import accounts, migrations, security
from live_server import events as ev
from live_server.db import Database
from live_server.errors import ServiceError
from live_server.settings import Settings, SettingsError, load_settings

log = logging.getLogger("live_server")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="live-server", description=__doc__)
    p.add_argument("--config", help="TOML or YAML settings file (default: $LIVE_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the server")
    run.add_argument("--host")
    run.add_argument("--port", type=int)

    cfg = sub.add_parser("config", help="print the effective configuration, secrets masked")
    cfg.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="catalog schema")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="migrate to the latest (or given) revision")
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser("downgrade", help="migrate down to a revision")
    down.add_argument("revision")
    dbsub.add_parser("current", help="show the current revision")

    users = sub.add_parser("users", help="accounts")
    usub = users.add_subparsers(dest="users_command", required=True)
    uc = usub.add_parser("create", help="create a user")
    uc.add_argument("--username", required=True)
    uc.add_argument("--role", choices=["admin", "lecturer", "viewer"], default="viewer")
    uc.add_argument("--display-name", default="")
    uc.add_argument("--email")
    uc.add_argument("--password", help="default: ask (or generate and print with --generate-password)")
    uc.add_argument("--generate-password", action="store_true")

    events = sub.add_parser("events", help="events")
    esub = events.add_subparsers(dest="events_command", required=True)
    ec = esub.add_parser("create", help="create an event")
    ec.add_argument("--title", required=True)
    ec.add_argument("--owner", required=True, help="username of the owner (lecturer or admin)")
    ec.add_argument("--description")
    ec.add_argument("--slug")
    ec.add_argument("--visibility", choices=["public", "authenticated", "password", "unlisted"])
    ec.add_argument("--password")
    ec.add_argument("--start", dest="scheduled_start")
    ec.add_argument("--end", dest="scheduled_end")
    ec.add_argument("--caption-language", dest="caption_language")
    ec.add_argument("--no-dvr", dest="dvr", action="store_false", default=None)
    ec.add_argument("--abr", action="store_true", default=None, help="transcode the ABR ladder (720p/480p/240p/audio)")
    ec.add_argument("--no-record", dest="record", action="store_false", default=None)
    ec.add_argument("--json", action="store_true", help="print the event as the API returns it")

    models = sub.add_parser("models", help="Vosk caption models")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("check", help="list the configured models (vosk_models) and whether each loads")

    lti = sub.add_parser("lti", help="LTI 1.3: course platforms (Moodle...) and our signing keys")
    lsub = lti.add_subparsers(dest="lti_command", required=True)
    lsub.add_parser("show", help="the values a platform's administrator pastes (tool, login, redirect, JWKS URLs)")
    la = lsub.add_parser("add-platform", help="register a platform with the values it shows for our tool")
    la.add_argument("--issuer", required=True, help="Moodle: Platform ID")
    la.add_argument("--client-id", required=True)
    la.add_argument("--deployment-id", required=True, action="append", help="repeat for several deployments")
    la.add_argument("--auth-login-url", required=True, help="Moodle: Authentication request URL")
    la.add_argument("--jwks-url", required=True, help="Moodle: Public keyset URL")
    la.add_argument("--token-url", default="", help="Moodle: Access token URL")
    la.add_argument("--name", default="")
    lsub.add_parser("platforms", help="list the registered platforms")
    lr = lsub.add_parser("remove-platform", help="forget a platform (its account links and courses)")
    lr.add_argument("platform_id", type=int)
    lsub.add_parser("keys", help="list our signing keys (all are published at /lti/jwks)")
    lsub.add_parser("rotate-key", help="sign with a new key from now on; the old ones stay published")
    lk = lsub.add_parser("remove-key", help="stop publishing an old key")
    lk.add_argument("kid")
    bbb = sub.add_parser("bbb", help="BigBlueButton servers, meetings and webinar runners")
    bsub = bbb.add_subparsers(dest="bbb_command", required=True)
    bservers = bsub.add_parser("servers", help="configured BigBlueButton servers")
    bssub = bservers.add_subparsers(dest="servers_command", required=True)
    badd = bssub.add_parser("add", help="add a server (the shared secret is asked for, or read from stdin)")
    badd.add_argument("--name", required=True)
    badd.add_argument("--api-url", required=True, help="https://bbb.example.edu/bigbluebutton/api (as bbb-conf --secret prints it)")
    badd.add_argument("--algorithm", default="sha256", help="checksum algorithm: sha1, sha256 (default), sha384, sha512")
    badd.add_argument("--secret-stdin", action="store_true", help="read the shared secret from the first line of stdin")
    bssub.add_parser("list", help="list servers (secrets shown by their first characters)")
    bremove = bssub.add_parser("remove", help="remove a server")
    bremove.add_argument("name")
    bmeetings = bsub.add_parser("meetings", help="meetings whose recordings belong to a lecturer")
    bmsub = bmeetings.add_subparsers(dest="meetings_command", required=True)
    bmap = bmsub.add_parser("map", help="map a meeting to a lecturer")
    bmap.add_argument("--server", required=True, help="server name")
    bmap.add_argument("--meeting", required=True, help="the meetingID given to BigBlueButton's create call")
    bmap.add_argument("--owner", required=True, help="the lecturer's username")
    bmap.add_argument("--auto-import", action="store_true", help="import each new recording without a click")
    bmsub.add_parser("list", help="list mapped meetings")
    brunner = bsub.add_parser("runner-config", help="the streaming runner's docker-compose.yml for an event's webinar")
    brunner.add_argument("--event", required=True, help="the event's slug or id")
    brunner.add_argument("--output", help="write it to this file (mode 600) instead of stdout")

    sub.add_parser("demo", help="create a demo admin and event if the catalog is empty (used by make run)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"live-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args, settings)
    except (ServiceError, migrations.DatabaseNotMigrated) as exc:
        print(f"live-server: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "config":
        data = settings.masked()
        data.update(_effective_ffmpeg(settings))
        data["effective_rtmp_host"] = settings.effective_rtmp_host
        data["effective_ll_hls_playlist_files_every_part"] = settings.effective_ll_hls_playlist_files_every_part
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            for key, value in data.items():
                print(f"{key} = {json.dumps(value)}")
        return 0
    if args.command == "db":
        url = settings.effective_database_url
        if args.db_command == "upgrade":
            _ensure_sqlite_folder(settings)
            migrations.upgrade(url, args.revision, stream_key_cipher=_stream_key_cipher(settings))
        elif args.db_command == "downgrade":
            migrations.downgrade(url, args.revision, stream_key_cipher=_stream_key_cipher(settings))
        else:
            db = Database(url)
            print(migrations.current_revision(db.engine) or "none (run `live-server db upgrade`)")
            db.close()
        return 0
    if args.command == "run":
        return _run(settings, args)
    if args.command == "models":
        return _check_models(settings)
    db = Database(settings.effective_database_url, settings.db_workers, stream_key_cipher=_stream_key_cipher(settings))
    try:
        migrations.ensure_migrated(db.engine)
        if args.command == "users":
            return _create_user(db, args)
        if args.command == "events":
            return _create_event(db, settings, args)
        if args.command == "demo":
            return _demo(db, settings)
        if args.command == "lti":
            return _lti(db, settings, args)
        if args.command == "bbb":
            return _bbb(db, settings, args)
    finally:
        db.close()
    return 2


def _effective_ffmpeg(settings: Settings) -> dict[str, Any]:
    """Which ffmpeg the server would run, by the rule in live_server/ffmpeg.py."""
    from live_server.ffmpeg import FfmpegNotFound, resolve_ffmpeg

    try:
        ff = resolve_ffmpeg(settings.ffmpeg)
    except FfmpegNotFound as exc:
        return {"effective_ffmpeg": None, "effective_ffmpeg_version": None, "effective_ffmpeg_origin": f"none: {exc}"}
    return {"effective_ffmpeg": ff.path, "effective_ffmpeg_version": ff.version, "effective_ffmpeg_origin": ff.origin}


def _check_models(settings: Settings) -> int:
    """Exit 0 when every configured model loads (1 otherwise, or when none is configured)."""
    from captions.vosk_models import check_models

    if not settings.vosk_models:
        print("no Vosk models configured: set vosk_models (LIVE_VOSK_MODELS=fr=/srv/models/vosk-fr,en=...); captions are off")
        return 1
    results = check_models(settings.vosk_models)
    for r in results:
        print(f"{r.language}\t{'ok' if r.ok else 'FAILED'}\t{r.path}\t{r.message}")
    return 0 if all(r.ok for r in results) else 1


def _stream_key_cipher(settings: Settings) -> security.StreamKeyCipher:
    return security.StreamKeyCipher(
        security.load_or_create_secret_key(settings.secret_key.get_secret_value(), settings.data_dir))


def _ensure_sqlite_folder(settings: Settings) -> None:
    if not settings.database_url:
        security.private_data_dir(settings.data_dir)


def _create_user(db: Database, args: argparse.Namespace) -> int:
    password = args.password
    if args.generate_password:
        password = secrets.token_urlsafe(12)
    elif password is None:
        password = getpass.getpass("Password: ")
    user = db.transaction(
        lambda s: accounts.create_user(s, args.username, password, args.role, args.display_name, args.email)
    )
    print(f"created {user.role.value} {user.username!r} (id {user.id})")
    if args.generate_password:
        print(f"password: {password}")
    return 0


def _create_event(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    fields = ("title", "description", "slug", "visibility", "password", "scheduled_start", "scheduled_end", "caption_language", "dvr", "abr", "record")
    payload = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    data = ev.parse_payload(ev.EventCreate, payload)

    def work(session: Any) -> dict[str, Any]:
        from sqlalchemy import select

        from live_server.api.event_api import render_event
        from live_server.models import User

        owner = session.scalar(select(User).where(User.username == args.owner))
        if owner is None:
            raise ServiceError(f"no user {args.owner!r}")
        event = ev.create_event(session, owner, data)
        return render_event(session, settings, event, owner)

    body = db.transaction(work)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(f"created event {body['slug']!r} (id {body['id']}); publish to {body['stream']['rtmp_url']} with its stream key")
    return 0


def _lti(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    """Platforms and keys, as the admin page does them (lti/registry.py, lti/keys.py)."""
    from lti import keys, registry
    from lti.tool import moodle_values

    sealer = _stream_key_cipher(settings)
    command = args.lti_command
    if command == "show":
        labels = {"tool_url": "Tool URL", "login_url": "Initiate login URL", "redirect_url": "Redirection URI(s)",
                  "deep_linking_url": "Content Selection URL (deep linking)", "jwks_url": "Public keyset URL (JWKS)"}
        for name, value in moodle_values(settings.base_url.rstrip("/")).items():
            print(f"{labels[name]}: {value}")
        return 0
    if command == "add-platform":
        row = db.transaction(lambda s: registry.register_platform(
            s, issuer=args.issuer, client_id=args.client_id, deployment_ids=args.deployment_id,
            auth_login_url=args.auth_login_url, jwks_url=args.jwks_url, token_url=args.token_url, name=args.name))
        print(f"registered platform {row.id}: {row.issuer} (client {row.client_id})")
        return 0
    if command == "platforms":
        for p in db.transaction(registry.list_platforms):
            print(f"{p.id}\t{p.name}\t{p.issuer}\tclient={p.client_id}\tdeployments={','.join(p.deployments)}\t"
                  f"login={p.auth_login_url}\tjwks={p.jwks_url}")
        return 0
    if command == "remove-platform":
        db.transaction(lambda s: registry.remove_platform(s, args.platform_id))
        print(f"removed platform {args.platform_id}")
        return 0
    if command == "keys":
        db.transaction(lambda s: keys.ensure_key(s, sealer))
        for k in db.transaction(keys.listing):
            print(f"{k.kid}\t{k.created_at.isoformat()}\t{'active' if k.active else 'published'}")
        return 0
    if command == "rotate-key":
        key = db.transaction(lambda s: keys.rotate(s, sealer))
        print(f"now signing with key {key.kid}; older keys stay published until removed")
        return 0
    db.transaction(lambda s: keys.remove(s, args.kid))
    print(f"key {args.kid} is no longer published")
    return 0


def _bbb(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    """BigBlueButton administration (bbb/servers.py); secrets are never printed back in full."""
    from bbb import servers as srv
    from bbb.webinar import runner_config

    if args.bbb_command == "servers":
        if args.servers_command == "add":
            secret = sys.stdin.readline().strip() if args.secret_stdin else getpass.getpass("Shared secret: ")
            row = db.transaction(lambda s: srv.add_server(s, args.name, args.api_url, secret, args.algorithm))
            print(f"added BigBlueButton server {row.name!r} ({row.api_url}, {row.checksum_algorithm}); recording-ready "
                  f"callback: {srv.callback_url(settings.base_url, row.id)}")
        elif args.servers_command == "list":
            for view in db.transaction(srv.server_views):
                print(f"{view.name}\t{view.api_url}\t{view.algorithm}\tsecret {view.secret_hint}\t"
                      f"callback {srv.callback_url(settings.base_url, view.id)}")
        else:
            db.transaction(lambda s: srv.remove_server(s, args.name))
            print(f"removed BigBlueButton server {args.name!r}")
        return 0
    if args.bbb_command == "meetings":
        if args.meetings_command == "map":
            db.transaction(lambda s: srv.map_meeting(s, args.server, args.meeting, args.owner, args.auto_import))
            print(f"meeting {args.meeting!r} on {args.server!r} is {args.owner!r}'s"
                  + (" (new recordings imported automatically)" if args.auto_import else ""))
        else:
            for m in db.transaction(srv.meeting_views):
                print(f"{m.server_name}\t{m.meeting_id}\t{m.owner_username}\t{'auto' if m.auto_import else 'manual'}"
                      f"\t{m.event_slug or ''}")
        return 0

    def render(session: Any) -> str:
        event = ev.get_event(session, args.event)
        return runner_config(session, event.owner, args.event, settings.rtmp_url)

    text = db.transaction(render)
    if args.output:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        print(f"wrote {args.output} (it holds the BBB shared secret and the stream key: keep it private)")
    else:
        print(text, end="")
    return 0


def _demo(db: Database, settings: Settings) -> int:
    """Idempotent first-run setup: an admin whose password is printed once, and one demo event."""
    from sqlalchemy import func, select

    from live_server.models import Event, User

    def work(session: Any) -> tuple[str | None, str | None]:
        password = None
        admin = session.scalar(select(User).order_by(User.id).limit(1))
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = accounts.create_user(session, "admin", password, "admin", "Administrator")
        created = None
        if session.scalar(select(func.count(Event.id))) == 0:
            event = ev.create_event(session, admin, ev.EventCreate.model_validate({"title": "Demo lecture", "description": "Push a stream to try the platform."}))
            created = event.slug
        return password, created

    password, slug = db.transaction(work)
    if password:
        print("=" * 60)
        print(f"Demo admin created. Username: admin  Password: {password}")
        print("This password is shown once. Log in at", settings.base_url + "/login")
        print("=" * 60)
    if slug:
        print(f"Demo event created: {settings.base_url}/events/{slug}")
    return 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from live_server import http_server
    from live_server.app import create_app
    from live_server.http_server import CONNECTION_GUARD
    from live_server.ffmpeg import FfmpegNotFound, resolve_ffmpeg

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    try:
        ff = resolve_ffmpeg(settings.ffmpeg)
    except FfmpegNotFound as exc:
        print(f"live-server: {exc}", file=sys.stderr)
        return 2
    log.info("using %s", ff.describe())
    db = Database(settings.effective_database_url, settings.db_workers)
    try:
        migrations.ensure_migrated(db.engine)
    except migrations.DatabaseNotMigrated as exc:
        print(f"live-server: refusing to start: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()
    Path(settings.media_dir).mkdir(parents=True, exist_ok=True)
    if settings.rtmp_enabled and settings.role in ("both", "ingest"):
        rtmp_host = settings.effective_rtmp_host
        log.info("RTMP ingest will listen on %s:%d (%s); encoders publish to %s/<stream key>",
                 rtmp_host, settings.rtmp_port,
                 "rtmp_host" if settings.rtmp_host else "same address as HTTP; set rtmp_host = \"0.0.0.0\" for other machines",
                 settings.rtmp_url)
    app = create_app(settings)
    http_server.run(app, settings.host, settings.port, app[CONNECTION_GUARD])
    return 0


if __name__ == "__main__":
    sys.exit(main())
