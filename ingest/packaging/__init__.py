"""Live HLS packaging: one supervised ffmpeg per event, playlists owned by us.

Pure parts: ``options`` (settings), ``ffmpeg_args`` (command lines and the
segment-list lines ffmpeg writes back), ``feed`` (bounded FLV queue), ``mpegts`` (continuity
counters joined across processes), ``timeline`` (numbering, discontinuities,
alignment, retention), ``variants`` (master playlist content); the m3u8
text itself is ``formats.m3u8``.  The asyncio shell is ``packager``.

Behind the ``ll_hls`` setting, passthrough events get the in-process LL-HLS packager instead:
``ll_stream`` (pure: FLV tags into ``formats.cmaf`` parts, segments and ``formats.m3u8``
playlists) and its shell ``ll_packager`` (no ffmpeg). Both meet ``packager.LivePackager``.
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
