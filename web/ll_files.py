"""LL-HLS blocking reloads on nodes without ingest (role ``web``): the playlists read from the media folder.

The ingest node keeps each rendition's LL playlists in memory (``ingest.packaging.ll_packager.LlPlaylists``)
and replaces ``<rendition>/live.m3u8`` and ``dvr.m3u8`` on disk at every part, after the part itself. A
web-only node reads those files back with :func:`formats.m3u8.parse_ll` and answers blocking reloads,
delta updates and hinted parts as the ingest node would, through the same ``web.media`` protocols.

Cost: nothing runs while nobody waits (a request reads the file only when its (inode, mtime, size) moved);
while requests wait on a rendition, one watcher per rendition, shared by all of them, looks at the files
every ``poll_seconds`` (two ``stat`` calls) and wakes them when a file changed; each version is parsed at
most once, on first demand, from where it differs from the last one (a DVR playlist grows at its end:
its earlier segments are not parsed again). How many renditions are followed and how many bytes their texts hold are
bounded: idle ones are forgotten first; when every one followed has waiters, a new rendition is served
from files only (no blocking), so that requests for many events cannot grow the node's memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from formats.m3u8 import LlPlaylist, LlText, PlaylistParseError, read_ll, render_ll

__all__ = ["LlFilePlaylists", "LlFileStreams"]

log = logging.getLogger(__name__)

_VIEWS = ("live.m3u8", "dvr.m3u8")
_Key = tuple[int, int, int]  # (inode, mtime_ns, size): a replaced file has a new inode


@dataclass
class _View:
    """One playlist file as last read: its text, and the playlist parsed from it (once, on demand)."""

    key: _Key | None = None
    text: str | None = None
    playlist: LlPlaylist | None = None
    parsed: bool = False
    last: LlText | None = None  # the last version parsed: the next one is read from where they differ
    skip_text: str | None = None
    cost: int = 0  # bytes held, roughly: text, parse, delta


@dataclass
class _Watch:
    waiting: int = 0
    task: asyncio.Task[None] | None = None
    seen: dict[str, _Key | None] = field(default_factory=dict)


class _WatchedEvent(asyncio.Event):
    """The ``changed()`` event of a rendition on disk: waiting on it is what starts (and keeps) its watcher."""

    def __init__(self, owner: "LlFilePlaylists") -> None:
        super().__init__()
        self._owner = owner

    async def wait(self) -> bool:  # type: ignore[override]
        self._owner._enter()
        try:
            return await super().wait()
        finally:
            self._owner._leave()


class LlFilePlaylists:
    """``web.media.LowLatencyPlaylists`` over one rendition folder of a live run packaged elsewhere."""

    def __init__(self, folder: Path, poll_seconds: float) -> None:
        self.folder = folder
        self.poll_seconds = poll_seconds
        self._views = {name: _View() for name in _VIEWS}
        self._changed = _WatchedEvent(self)
        self._watch = _Watch()
        self.reads = 0
        self.parses = 0
        self.segments_read = 0  # segments parsed (a DVR playlist's unchanged ones are not parsed again)

    # -- the protocol ---------------------------------------------------------------------------
    def current(self, name: str) -> LlPlaylist | None:
        """The playlist as the file says now; None when it is missing or not an LL playlist."""
        view = self._views.get(name)
        if view is None:
            return None
        self._refresh(name, view)
        if not view.parsed:
            view.parsed = True
            view.playlist = None
            if view.text is not None:
                self.parses += 1
                try:
                    view.last = read_ll(view.text, view.last)
                    view.playlist = view.last.playlist
                    self.segments_read += view.last.segments_read
                except PlaylistParseError:
                    view.playlist = view.last = None  # a plain HLS playlist (or not ours): served as a file
            view.cost = 8 * len(view.text or "")  # the text, the last version's, and their parse, roughly
        return view.playlist

    def text(self, name: str, skip: bool = False) -> str:
        """The text of the version :meth:`current` returned last (the file's own bytes, or its delta)."""
        view = self._views[name]
        assert view.text is not None and view.playlist is not None
        if not skip:
            return view.text
        if view.skip_text is None:
            view.skip_text = render_ll(view.playlist, skip=True)
            view.cost += len(view.skip_text)
        return view.skip_text

    def changed(self) -> asyncio.Event:
        return self._changed

    # -- accounting ------------------------------------------------------------------------------
    @property
    def cost(self) -> int:
        return sum(view.cost for view in self._views.values())

    @property
    def waiting(self) -> int:
        return self._watch.waiting

    def forget(self) -> None:
        """Drop what was read (an idle rendition evicted); the next request reads the file again."""
        self._views = {name: _View() for name in _VIEWS}

    def close(self) -> None:
        if self._watch.task is not None:
            self._watch.task.cancel()

    # -- reading ---------------------------------------------------------------------------------
    def _refresh(self, name: str, view: _View) -> None:
        path = self.folder / name
        key = _stat(path)
        if key == view.key:
            return
        self.reads += 1
        try:
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())  # the key of the bytes read, not of a later replacement
                data = handle.read()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            text: str | None = data.decode("utf-8")
        except (FileNotFoundError, NotADirectoryError):
            key, text = None, None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("%s: cannot read %s: %s", self.folder, name, exc)
            key, text = None, None
        view.key, view.text, view.playlist, view.parsed, view.skip_text = key, text, None, False, None

    # -- watching (only while requests wait) -------------------------------------------------------
    def _enter(self) -> None:
        watch = self._watch
        watch.waiting += 1
        if watch.task is None:
            # From the versions last read: one that came between a request's read and its wait wakes it.
            watch.seen = {name: view.key if view.key is not None else _stat(self.folder / name)
                          for name, view in self._views.items()}
            watch.task = asyncio.get_running_loop().create_task(self._poll())

    def _leave(self) -> None:
        self._watch.waiting -= 1

    async def _poll(self) -> None:
        watch = self._watch
        try:
            while watch.waiting > 0:
                await asyncio.sleep(self.poll_seconds)
                now = {name: _stat(self.folder / name) for name in _VIEWS}
                if now != watch.seen:
                    watch.seen = now
                    woken, self._changed = self._changed, _WatchedEvent(self)
                    woken.set()
        finally:
            watch.task = None


def _stat(path: Path) -> _Key | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class LlFileStreams:
    """``web.media.LowLatencyStreams`` for a node that serves live runs packaged by another node.

    One :class:`LlFilePlaylists` per rendition folder that has a live playlist, at most
    ``max_renditions`` of them holding at most ``max_bytes`` (roughly: texts, parses, deltas); the
    least recently asked idle ones are forgotten first (checked when a rendition is added).
    """

    def __init__(self, poll_seconds: float = 0.025, max_renditions: int = 256, max_bytes: int = 64 * 2**20) -> None:
        self.poll_seconds = poll_seconds
        self.max_renditions = max_renditions
        self.max_bytes = max_bytes
        self._renditions: OrderedDict[Path, LlFilePlaylists] = OrderedDict()
        self.refused = 0

    def ll_playlists(self, event_id: int, folder: Path, rendition: str) -> LlFilePlaylists | None:
        path = folder / rendition
        entry = self._renditions.get(path)
        if entry is not None:
            self._renditions.move_to_end(path)
            return entry
        if _stat(path / _VIEWS[0]) is None:
            return None  # no live playlist there (yet): nothing to follow, and nothing kept for made-up names
        if not self._bound(room=1):
            self.refused += 1
            return None  # every rendition followed has waiters: this one is served from files only
        entry = self._renditions[path] = LlFilePlaylists(path, self.poll_seconds)
        return entry

    def _bound(self, room: int = 0) -> bool:
        """Forget idle renditions, least recently asked first, until the bounds hold (with ``room`` more)."""
        total = sum(entry.cost for entry in self._renditions.values())
        if len(self._renditions) + room <= self.max_renditions and total <= self.max_bytes:
            return True
        for path, entry in list(self._renditions.items()):
            if entry.waiting:
                continue
            total -= entry.cost
            entry.forget()
            del self._renditions[path]
            if len(self._renditions) + room <= self.max_renditions and total <= self.max_bytes:
                return True
        return len(self._renditions) + room <= self.max_renditions

    @property
    def followed(self) -> int:
        return len(self._renditions)

    @property
    def watching(self) -> int:
        """Renditions with a watcher running (requests waiting on them)."""
        return sum(1 for entry in self._renditions.values() if entry._watch.task is not None)

    async def close(self) -> None:
        """Stop the watchers (their waiters are the server's requests, ended with it)."""
        for entry in self._renditions.values():
            entry.close()
        self._renditions.clear()
