"""The only code that opens workspace files.

The mount I/O contract:

* every path is relative to the workspace root; absolute paths, ``..`` segments, NUL bytes and
  symlinks that resolve outside the root are refused (:class:`PathError`) before anything is opened;
* sources are read sequentially and every ``read()`` asks for ``read_block`` bytes (>= 128 KiB,
  default 1 MiB), so S3 Files serves them straight from S3 rather than its paid cache;
* outputs are written once at their final path: no temp file, no rename (a rename on S3 Files is a
  copy plus a delete), parents created as needed, never through a symlink;
* outputs are hashed as they are written (:class:`OutputFile`): nothing is read back from the mount;
* every read() and write() on the workspace is counted in the job's
  :class:`~pipelines.ledger.StorageIO` (the cost ledger in its manifest), with what tools did on the
  mount added by their wrappers.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType

from config.errors import (
    BadInputError,
    PathError,
    RetryableError,
    WorkspaceFullError,
    WorkspaceNotWritableError,
)
from config.layout import MAX_KEY_BYTES
from pipelines.ledger import StorageIO

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
_FULL = (errno.ENOSPC, errno.EDQUOT)
_PRUNE_RACE_ATTEMPTS = (
    32  # walk again this often if concurrent clean-ups keep pruning (3 pruning processes: 0 in 27,000)
)


def not_writable(folder: Path, exc: OSError | None = None) -> WorkspaceNotWritableError:
    """The error that names the folder, who we are, who owns it, and what to change."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        st = os.stat(folder)
        owner = f"owned by {st.st_uid}:{st.st_gid} with mode {stat.S_IMODE(st.st_mode):o}"
    except OSError:
        owner = "not readable"
    if (exc is not None and exc.errno == errno.EROFS) or _read_only_fs(folder):
        why = "is on a read-only file system"
        fix = "mount it read-write (on Lambda: the function's role needs s3files:ClientWrite)"
    else:
        why = f"is {owner}"
        fix = (
            "give the S3 Files access point a PosixUser that owns the folder (S3 Files takes a folder's "
            "owner from its directory marker object; a folder without one is root:root 0755), "
            f"or make the folder writable for uid {uid}; locally, run with --user matching its owner"
        )
    return WorkspaceNotWritableError(
        f"the workspace folder {folder} is not writable by this process (uid {uid}, gid {gid}): it {why}; "
        f"{fix}"
    )


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def sort_key(relpath: str) -> tuple[str, ...]:
    """The order :meth:`Workspace.walk` yields paths in (by path segments)."""
    return tuple(relpath.split("/"))


def clean_relpath(relpath: str) -> str:
    """Validate a workspace-relative path and return it normalised ('a//b/./c' -> 'a/b/c')."""
    if not isinstance(relpath, str) or not relpath:
        raise PathError("empty path")
    if "\0" in relpath:
        raise PathError(f"path contains a NUL byte: {relpath!r}")
    if relpath.startswith("/"):
        raise PathError(f"absolute path not allowed (paths are relative to the workspace): {relpath!r}")
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathError(f"'..' not allowed in paths: {relpath!r}")
    if not parts:
        raise PathError(f"path names the workspace root itself: {relpath!r}")
    clean = "/".join(parts)
    if len(clean.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        raise PathError(f"path is longer than the S3 key limit of {MAX_KEY_BYTES} bytes: {clean[:60]}…")
    return clean


class OutputFile:
    """An output being written at its final path; hashes as it goes (nothing is read back to hash it).
    ``on_close`` is called once, after the file is closed (the engine records size and sha256 then)."""

    def __init__(self, path: Path, relpath: str, io: StorageIO) -> None:
        self.path = path
        self.relpath = relpath
        self._fd = os.open(path, _WRITE_FLAGS, 0o644)
        self._io = io
        io.new_file()
        self._sha = hashlib.sha256()
        self.size = 0
        self.on_close: Callable[[OutputFile], None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._sha.update(view)
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError as exc:
                if exc.errno in _FULL:
                    raise WorkspaceFullError(
                        f"the workspace is full writing {self.relpath} ({exc.strerror}); free space or raise "
                        "the quota, then retry"
                    ) from None
                raise
            view = view[n:]
            self.size += n
            self._io.wrote(n)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
            if self.on_close is not None:
                self.on_close(self)

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Workspace:
    """A workspace root (the S3 Files mount) and the rules for touching it."""

    def __init__(self, root: str | os.PathLike[str], *, read_block: int = 1 << 20) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise PathError(f"workspace {self.root} is not a directory (is the S3 Files mount there?)")
        self.real_root = Path(os.path.realpath(self.root))
        self.read_block = read_block
        self.io = StorageIO()

    def start_ledger(self) -> StorageIO:
        """Count this workspace's I/O afresh (one job at a time per Workspace) and return the ledger."""
        self.io = StorageIO()
        return self.io

    def check_writable(self) -> None:
        """Raise :class:`WorkspaceNotWritableError` unless this process may create files in the root.

        Asks the file system (access(2), answered by the NFS server on S3 Files) without writing
        anything: a probe file would be exported to S3 and fire an upload event of its own.
        """
        if not os.access(self.root, os.W_OK | os.X_OK) or _read_only_fs(self.root):
            raise not_writable(self.root)

    # -- paths -------------------------------------------------------------------------------
    def _inside(self, real: str) -> bool:
        root = str(self.real_root)
        return real == root or real.startswith(root.rstrip("/") + "/")

    def resolve_source(self, relpath: str) -> Path:
        """Absolute path of an existing regular file inside the workspace."""
        rel = clean_relpath(relpath)
        path = self.root / rel
        real = os.path.realpath(path)
        if not self._inside(real):
            raise PathError(f"{rel} resolves outside the workspace (symlink to {real})")
        return path

    def resolve_output(self, relpath: str) -> Path:
        """Absolute final path for an output; creates its parent folders inside the workspace.

        A concurrent job that failed prunes the folders it left empty (``prune_empty_parents``), so a
        folder seen or made here may vanish before the next step: the walk then starts again."""
        rel = clean_relpath(relpath)
        for attempt in range(_PRUNE_RACE_ATTEMPTS):
            try:
                self._make_parents(rel)
                break
            except FileNotFoundError:
                if attempt == _PRUNE_RACE_ATTEMPTS - 1:
                    raise
        return self._final_path(rel)

    def _make_parents(self, rel: str) -> None:
        cur = self.root
        for part in PurePosixPath(rel).parts[:-1]:
            cur = cur / part
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                try:
                    os.mkdir(cur, 0o755)  # FileNotFoundError: a concurrent clean-up removed the parent
                except FileExistsError:  # another worker made it meanwhile
                    pass
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    if exc.errno in _DENIED:
                        raise not_writable(cur.parent, exc) from None
                    raise
                st = os.lstat(cur)
            except OSError as exc:  # e.g. ENAMETOOLONG
                raise PathError(f"output path {rel}: {exc.strerror}") from None
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(cur)
                if not self._inside(real):
                    raise PathError(
                        f"output folder {cur.relative_to(self.root)} is a symlink out of the workspace"
                    )
                st = os.stat(cur)
            if not stat.S_ISDIR(st.st_mode):
                raise PathError(f"output folder {cur.relative_to(self.root)} exists and is not a folder")

    def _final_path(self, rel: str) -> Path:
        final = self.root / rel
        if os.path.islink(final):
            raise PathError(f"output path {rel} is a symlink; refusing to write through it")
        return final

    def relpath(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def stat_source(self, relpath: str) -> os.stat_result:
        """stat() a source (follows in-workspace symlinks) without opening it."""
        path = self.resolve_source(relpath)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise BadInputError(f"{relpath}: no such file in the workspace") from None
        except OSError as exc:  # e.g. ENAMETOOLONG: a path segment over 255 bytes
            raise PathError(f"{relpath}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise BadInputError(f"{relpath}: not a regular file")
        return st

    def walk(self, relpath: str) -> Iterator[str]:
        """Files under a folder (or the file itself), in a stable (sorted) order; symlinked folders are
        not followed."""
        rel = "" if relpath in ("", ".", "./") else clean_relpath(relpath)
        base = self.resolve_source(rel) if rel else self.root
        if base.is_file():
            yield rel
            return
        if not base.is_dir():
            raise BadInputError(f"{relpath}: no such file or folder in the workspace")
        # depth-first in name order: the order of sort_key(), so a cursor can resume a walk
        stack = [iter(self._sorted_entries(base))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
            elif entry.is_dir(follow_symlinks=False):
                stack.append(iter(self._sorted_entries(Path(entry.path))))
            elif entry.is_file():
                yield self.relpath(Path(entry.path))

    @staticmethod
    def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)

    # -- reading -----------------------------------------------------------------------------
    def read_source(
        self, relpath: str, *, expected_size: int | None = None, max_bytes: int | None = None
    ) -> bytes:
        """Read a whole source sequentially; every read() asks for exactly ``read_block`` bytes."""
        path = self.resolve_source(relpath)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise BadInputError(f"{relpath}: no such file in the workspace") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # final component is an in-workspace symlink: already checked
                fd = os.open(os.path.realpath(path), _READ_FLAGS)
            else:
                raise BadInputError(f"{relpath}: cannot open: {exc.strerror}") from None
        with open(fd, "rb", buffering=0, closefd=True) as raw:
            size = os.fstat(fd).st_size
            if max_bytes is not None and size > max_bytes:
                raise BadInputError(f"{relpath}: {size} bytes is over the limit of {max_bytes} bytes")
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            block = self.read_block
            # room for the whole file plus one full block, so every read can ask for `block` bytes
            buf = bytearray((size // block + 1) * block + block)
            view = memoryview(buf)
            total = 0
            while True:
                if total + block > len(buf):
                    buf.extend(bytes(block * 4))
                    view.release()
                    view = memoryview(buf)
                n = raw.readinto(view[total : total + block])
                if not n:
                    break
                self.io.read(n)
                total += n
                if max_bytes is not None and total > max_bytes:
                    raise BadInputError(f"{relpath}: grew over the limit of {max_bytes} bytes while reading")
            view.release()
        if expected_size is not None and total != expected_size:
            raise RetryableError(
                f"{relpath}: read {total} bytes, expected {expected_size}; it changed while reading"
            )
        del buf[total:]
        return bytes(buf)

    def size_of(self, relpath: str) -> int:
        """Size of a workspace file (a stat: nothing is read)."""
        return os.stat(self.root / clean_relpath(relpath)).st_size

    # -- writing -----------------------------------------------------------------------------
    def open_output(self, relpath: str) -> OutputFile:
        for attempt in range(_PRUNE_RACE_ATTEMPTS):
            path = self.resolve_output(relpath)
            try:
                return OutputFile(path, clean_relpath(relpath), self.io)
            except FileNotFoundError:  # a concurrent clean-up pruned the (empty) folder: make it again
                if attempt == _PRUNE_RACE_ATTEMPTS - 1:
                    raise
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise PathError(
                        f"output path {relpath} is a symlink; refusing to write through it"
                    ) from None
                if exc.errno in _DENIED:
                    raise not_writable(path.parent, exc) from None
                raise
        raise AssertionError("unreachable")

    def create_exclusive(self, relpath: str, data: bytes) -> bool:
        """Create a small file only if it does not exist (O_EXCL: atomic on NFS v4.1), with one write();
        False if it exists.  For leases: no link(), which S3 Files does not have."""
        for attempt in range(_PRUNE_RACE_ATTEMPTS):
            path = self.resolve_output(relpath)
            try:
                fd = os.open(path, _WRITE_FLAGS | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                return False
            except FileNotFoundError:  # another worker pruned the (empty) folder meanwhile: make it again
                if attempt == _PRUNE_RACE_ATTEMPTS - 1:
                    raise
            except OSError as exc:
                if exc.errno in _DENIED:
                    raise not_writable(path.parent, exc) from None
                raise
        self.io.new_file()
        try:
            self.io.wrote(os.write(fd, data))
        finally:
            os.close(fd)
        return True

    def prune_empty_parents(self, relpath: str) -> None:
        """Remove the folders above ``relpath`` that are empty now (deepest first, never the root), so a
        job that wrote nothing leaves no folders behind either."""
        cur = (self.root / clean_relpath(relpath)).parent
        while cur != self.root and self._inside(os.path.realpath(cur)):
            try:
                os.rmdir(cur)
            except OSError:  # not empty, gone, or not ours to remove: stop here
                return
            cur = cur.parent

    def write_file(self, relpath: str, data: bytes) -> OutputFile:
        """Write a small file at its final path with one write() (the manifest)."""
        with self.open_output(relpath) as out:
            out.write(data)
        return out

    def read_small(self, relpath: str, limit: int = 16 << 20) -> bytes | None:
        """Read a small workspace file we wrote (a manifest); None if absent."""
        try:
            path = self.resolve_source(relpath)
            with open(path, "rb", buffering=0) as f:  # one read of the file's own size (+1 sees EOF)
                data = f.read(min(limit, os.fstat(f.fileno()).st_size + 1))
                self.io.read(len(data))
                return data
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PathError):
            return None

    def remove(self, relpaths: Iterable[str]) -> list[str]:
        """Delete files we wrote (partial outputs of a failed job); returns what was removed."""
        removed = []
        for rel in relpaths:
            try:
                os.unlink(self.root / clean_relpath(rel))
                removed.append(rel)
            except FileNotFoundError:
                pass
        return removed
