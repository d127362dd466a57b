"""Writing a small file so that readers never see half of it (playlists, served while they change).

Ground floor: the packager, live captions and the recording folder all replace playlists that
players and nginx read at the same moment.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path | str, text: str) -> None:
    """Replace ``path`` so that a concurrent reader sees the old or the new file, never half.

    The temp file lives in the same directory so ``os.replace`` is a rename on
    one filesystem.  No fsync: a crash may lose the latest version, which the
    next segment rewrites anyway.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
