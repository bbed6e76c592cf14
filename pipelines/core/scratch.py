"""Per-job scratch folders on local disk (``TMPDIR``; on Lambda ``/tmp``), and the sweep of dead ones.

A job's scratch folder holds what tools need on local disk: a small source's local copy for ffmpeg,
HLS playlists before they are rewritten, OCR page images, poster frames.  The engine removes it when the
job ends.  A job that was SIGKILLed (Lambda's timeout, the OOM killer, a crashed pool worker) cannot, and
on Lambda ``/tmp`` outlives the process that filled it.  So each folder is held by an ``flock`` on a
file inside it for the job's life; the kernel drops the lock when the holder dies, whatever killed it,
in any pid namespace.  :func:`sweep` (run once when an engine starts) removes every folder whose lock
can be taken: its job is gone.  ``TMPDIR`` is local disk, never the NFS mount, so ``flock`` is reliable.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

from config.logs import get_logger

log = get_logger(__name__)
PREFIX = "media-worker-"
LOCK = ".held"
_GRACE_SECONDS = 60.0  # a folder with no lock file yet is being created: leave it alone this long


class Scratch:
    """One job's scratch folder, held (flock) until :meth:`remove`."""

    def __init__(self, parent: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        self._fd = os.open(self.path / LOCK, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def sweep(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove scratch folders left by jobs that died (their lock is free); returns what was removed."""
    base = Path(parent or tempfile.gettempdir())
    removed = []
    try:
        with os.scandir(base) as it:
            entries = [e for e in it if e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for entry in entries:
        folder = Path(entry.path)
        if _is_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("removed %d scratch folder(s) left by jobs that died, in %s", len(removed), base)
    return removed


def _is_stale(folder: Path) -> bool:
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:  # not locked yet, or made by something else: only when it is old
        try:
            return time.time() - folder.lstat().st_mtime > _GRACE_SECONDS
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # taken: its holder is dead, unless it has only just created the file and not locked it yet
        return os.fstat(fd).st_size > 0 or time.time() - folder.lstat().st_mtime > _GRACE_SECONDS
    except OSError:  # EWOULDBLOCK: a live job holds it
        return False
    finally:
        os.close(fd)  # closing drops our lock, if we took it
