"""Live HLS packaging: one supervised ffmpeg per event, playlists owned by us.

Pure parts: ``options`` (settings), ``ffmpeg_args`` (command lines and the
segment-list lines ffmpeg writes back), ``playlist`` (m3u8 model, render,
parse, atomic write), ``feed`` (bounded FLV queue), ``mpegts`` (continuity
counters joined across processes), ``timeline`` (numbering, discontinuities,
alignment, retention), ``variants`` (master playlist content).  The asyncio
shell is ``packager``.
"""

from .options import DEFAULT_LADDER, PASSTHROUGH_RENDITION, PackagerOptions, Rendition
from .packager import Packager, PackagerListener
from .playlist import (
    MediaPlaylist,
    Segment,
    SubtitleRendition,
    VariantStream,
    parse_media_playlist,
    render_master,
    write_atomic,
)

__all__ = [
    "DEFAULT_LADDER",
    "PASSTHROUGH_RENDITION",
    "MediaPlaylist",
    "Packager",
    "PackagerListener",
    "PackagerOptions",
    "Rendition",
    "Segment",
    "SubtitleRendition",
    "VariantStream",
    "parse_media_playlist",
    "render_master",
    "write_atomic",
]
