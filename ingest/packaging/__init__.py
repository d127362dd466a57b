"""Live HLS packaging. By default (``ll_hls``) every event gets the LL-HLS packager described below;
with ``ll_hls = false``, plain HLS: one supervised ffmpeg per event, playlists owned by us.

Pure parts (most shared by both packagers): ``options`` (settings), ``ffmpeg_args`` (command lines and the
segment-list lines ffmpeg writes back), ``feed`` (bounded FLV queue), ``mpegts`` (continuity
counters joined across processes), ``timeline`` (numbering, discontinuities,
alignment, retention), ``variants`` (master playlist content); the m3u8
text itself is ``formats.m3u8``.  The asyncio shell is ``packager``; its ffmpeg is run by
``supervisor``, as the LL-HLS transcoder's is.

The LL-HLS packager (``ll_hls``, the default): ``ll_stream``
(pure: one rendition's FLV tags into ``formats.cmaf`` parts, segments and ``formats.m3u8``
playlists), ``ll_ladder`` (pure: an event's renditions, aligned, with rendition reports), and
the shell ``ll_packager``: passthrough tags are muxed as they arrive (no ffmpeg); an ABR ladder
is encoded by ``transcoder`` (one supervised ffmpeg, each rendition as FLV on its own pipe) and
its outputs muxed the same way. Both packagers meet ``packager.LivePackager``. ``dts_guard``
(pure) keeps every publisher's decode times increasing before any packager sees them.
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
