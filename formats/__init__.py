"""Wire and file formats as pure code: text or bytes in, plain data out, and back.

One implementation per format: ``m3u8`` (HLS playlists, Low-Latency HLS ones included), ``cmaf``
(fMP4 parts), ``h264`` (SPS picture size), ``flv`` (FLV tags), ``amf0`` (RTMP command and metadata
values), ``webvtt`` (subtitles, chapters). Nothing here does I/O or imports a component, so every
component may use it (ingest, captions, the recorder and the replay catalog).
"""
