"""Live HLS packaging: one supervised ffmpeg per event, playlists owned by us.

Pure parts: ``options`` (settings), ``ffmpeg_args`` (command lines and the
segment-list lines ffmpeg writes back), ``feed`` (bounded FLV queue), ``mpegts`` (continuity
counters joined across processes), ``timeline`` (numbering, discontinuities,
alignment, retention), ``variants`` (master playlist content); the m3u8
text itself is ``formats.m3u8``.  The asyncio shell is ``packager``.
"""

from .options import DEFAULT_LADDER, PASSTHROUGH_RENDITION, PackagerOptions, Rendition
from .packager import Packager, PackagerListener

__all__ = [
    "DEFAULT_LADDER",
    "PASSTHROUGH_RENDITION",
    "Packager",
    "PackagerListener",
    "PackagerOptions",
    "Rendition",
]
