"""Per-job scratch folders on local disk (``TMPDIR``; on Lambda ``/tmp``), and the sweep of dead ones.

A job's scratch folder holds what tools need on local disk: a small source's local copy for ffmpeg,
HLS playlists before they are rewritten, OCR page images, poster frames.  The engine removes it when the
job ends.  A job that was SIGKILLed (Lambda's timeout, the OOM killer, a crashed pool worker) cannot, and
on Lambda ``/tmp`` outlives the process that filled it, so :func:`sweep` (run once when an engine starts)
removes dead jobs' folders.  It removes only what it can prove the worker made:

* every job folder lives in the worker's own parent, ``$TMPDIR/media-worker-scratch-<uid>/`` (made 0700,
  and used only while it is a real folder owned by this user, never a symlink); nothing else in
  ``TMPDIR`` is ever looked at, whatever its name or age (a demo workspace, a user's own folder);
* each job folder holds a lock file, owned by this user, that the job ``flock``\\ s and only then writes
  :data:`MARKER` into; the kernel drops the lock when the holder dies, whatever killed it, in any pid
  namespace.  A folder is removed only when its lock file carries the marker and its lock can be taken:
  its job is gone.  A folder without the marker (being created, or not ours) is left alone, so there is
  no grace period to get wrong.

``TMPDIR`` is local disk, never the NFS mount, so ``flock`` is reliable.  The parent is removed when it
is left empty (a job making its folder at that moment makes the parent again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from config.errors import ScratchUnsafeError
from config.logs import get_logger

log = get_logger(__name__)
PARENT_PREFIX = "media-worker-scratch-"  # + the effective uid: the worker's own folder in TMPDIR
JOB_PREFIX = "job-"
LOCK = ".held"
MARKER = b"media-worker-scratch/1 "  # a job's lock file starts with it (then "pid=N"), written under flock
_ATTEMPTS = 100  # makes of a job folder that lost the race with another job removing the empty parent
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def scratch_root(parent: str | os.PathLike[str] | None = None) -> Path:
    """The worker's own scratch parent in ``parent`` (default ``TMPDIR``)."""
    return Path(parent or tempfile.gettempdir()) / f"{PARENT_PREFIX}{os.geteuid()}"


def _open_root(root: Path, *, create: bool) -> int:
    """An fd of ``root``, checked to be a real folder (not a symlink) owned by us and closed to others.

    Raises FileNotFoundError (it does not exist and ``create`` is false) or ScratchUnsafeError.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    try:
        fd = os.open(root, _DIR)
    except FileNotFoundError:  # sweep: no scratch made here yet
        raise
    except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file
        raise ScratchUnsafeError(f"scratch folder {root} is not a real folder ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ScratchUnsafeError(
                f"scratch folder {root} is owned by uid {st.st_uid}, not by this worker's uid {os.geteuid()}"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o700)  # ours: keep everyone else out of it
    except BaseException:
        os.close(fd)
        raise
    return fd


class Scratch:
    """One job's scratch folder, held (flock) until :meth:`remove`."""

    def __init__(self, parent: str | os.PathLike[str] | None = None) -> None:
        """Raises ScratchUnsafeError when the worker's scratch parent is not its own."""
        root = scratch_root(parent)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self.path, self._fd = _new_job(root)
                return
            except FileNotFoundError:  # another job removed the (then empty) parent: make it again
                if attempt == _ATTEMPTS:
                    raise

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):  # the parent too, unless another job's folder is in it
            os.rmdir(self.path.parent)


def _new_job(root: Path) -> tuple[Path, int]:
    """A new job folder in ``root`` and its lock file's fd, locked and marked.  Made through ``root``'s
    fd: FileNotFoundError if ``root`` is removed meanwhile (empty, by another job's clean-up)."""
    root_fd = _open_root(root, create=True)
    try:
        while True:
            name = f"{JOB_PREFIX}{secrets.token_hex(6)}"
            try:
                os.mkdir(name, 0o700, dir_fd=root_fd)  # ENOENT once root is removed; then it stays
                break
            except FileExistsError:
                continue
        job_fd = os.open(name, _DIR, dir_fd=root_fd)
    finally:
        os.close(root_fd)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(LOCK, flags, 0o600, dir_fd=job_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # the marker only under the lock: a sweep taking the lock of a marked file knows the job is gone
            mark = MARKER + f"pid={os.getpid()}\n".encode()
            if os.write(fd, mark) != len(mark):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root / name / LOCK))
        except BaseException:
            os.close(fd)
            raise
    except BaseException:  # TMPDIR full: a folder no sweep could prove dead; not left behind
        shutil.rmtree(root / name, ignore_errors=True)
        with contextlib.suppress(OSError):  # and the parent, unless another job's folder is in it
            os.rmdir(root)
        raise
    finally:
        os.close(job_fd)
    return root / name, fd


def sweep(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the scratch folders of jobs that died (marked, lock free) from the worker's own parent in
    ``parent`` (default ``TMPDIR``); returns what was removed.  Nothing outside that parent is touched."""
    root = scratch_root(parent)
    try:
        fd = _open_root(root, create=False)
    except FileNotFoundError:
        return []
    except ScratchUnsafeError as exc:
        log.warning("not sweeping scratch: %s", exc)
        return []
    removed = []
    try:
        with os.scandir(fd) as it:
            names = [e.name for e in it if e.name.startswith(JOB_PREFIX) and e.is_dir(follow_symlinks=False)]
        for name in names:
            if _is_dead_job(fd, name):
                shutil.rmtree(name, ignore_errors=True, dir_fd=fd)
                removed.append(root / name)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):  # unless a job's folder is in it
        os.rmdir(root)
    if removed:
        log.info("removed %d scratch folder(s) left by jobs that died, in %s", len(removed), root)
    return removed


def _is_dead_job(root_fd: int, name: str) -> bool:
    """Whether ``name`` (in the scratch parent) is a job folder whose job is gone: its lock file is a
    regular file of ours that starts with :data:`MARKER`, and its lock can be taken."""
    try:
        folder = os.open(name, _DIR, dir_fd=root_fd)
    except OSError:
        return False
    try:
        fd = os.open(LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
    except OSError:  # no lock file (being created, or not ours): never ours to remove
        return False
    finally:
        os.close(folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises EWOULDBLOCK: a live job holds it
        # taken: the marker is written only under the job's lock, so a marked file's job is gone
        return os.pread(fd, len(MARKER), 0) == MARKER
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops our lock, if we took it
