"""Standalone RTMP ingest for debugging: accepts any key, dumps each stream to FLV.

    python -m ingest.rtmp --port 1935 --dir var/rtmp-dump

Files are named after the redacted key. Writes are small buffered appends; this is a
debugging aid, not the production recorder. Limits and deadlines come from the same
settings as the server's (``LIVE_RTMP_*`` variables, ``LIVE_CONFIG``); any application name
is accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Callable
from typing import Any, BinaryIO

from formats import flv
from ingest.publishing import MediaSink, redact_key
from ingest.rtmp.server import rtmp_server_from_settings


class FlvFileSink:
    """Appends every message of one publish to an FLV file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = path.open("wb")
        self._file.write(flv.flv_header(has_audio=True, has_video=True))

    async def on_metadata(self, metadata: dict[str, Any]) -> None:
        self._file.write(flv.script_tag_from_metadata(metadata))

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        tag_type = flv.TAG_VIDEO if kind == "video" else flv.TAG_AUDIO
        self._file.write(flv.flv_tag(tag_type, timestamp_ms, payload))

    async def close(self, reason: str) -> None:
        self._file.close()
        logging.info("wrote %s (%s)", self.path, reason)


class FlvDumpPublisher:
    """Accepts every publish and writes it to ``<directory>/<redacted key>.flv``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def start_publish(
        self, *, protocol: str, app: str, stream_key: str, remote_address: str,
        terminate: Callable[[str], None] | None = None,
    ) -> MediaSink:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FlvFileSink(self.directory / f"{redact_key(stream_key)}.flv")


async def _main(args: argparse.Namespace) -> None:
    from live_server.settings import load_settings  # not for --help: pydantic takes a while to import

    settings = load_settings()
    given = {"host": args.host, "port": args.port, "idle_timeout": args.idle_timeout}
    overrides = {name: value for name, value in given.items() if value is not None}
    # Reads as bytes arrive (no rest between reads): a debugging dump has every tag on disk as soon as it came.
    server = rtmp_server_from_settings(settings, FlvDumpPublisher(Path(args.dir)), accepted_apps=None, read_rest=0.0,
                                       **overrides)
    await server.start()
    print(f"listening on rtmp://{server.address}/<app>/<key>", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest.rtmp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="default: the settings' RTMP host (127.0.0.1)")
    parser.add_argument("--port", type=int, help="default: the settings' RTMP port (1935); 0 picks one")
    parser.add_argument("--dir", default="var/rtmp-dump", help="where FLV files go")
    parser.add_argument("--idle-timeout", type=float, help="default: rtmp_idle_timeout_seconds (10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from live_server.settings import SettingsError

    try:
        asyncio.run(_main(args))
    except SettingsError as exc:
        raise SystemExit(f"python -m ingest.rtmp: {exc}") from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
