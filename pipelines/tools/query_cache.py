"""Answers of tool queries (version, options, encoders, language packs), kept across processes.

Every process used to ask ffmpeg and tesseract the same questions before its first job (``ffmpeg
-version``, ``-h protocol=file``, ``-encoders``, ``tesseract --version``, ``--list-langs``): ~0.4 s of
a Lambda cold start and of every CLI run of a video.  An answer is stored with the size, mtime and
inode of each file it depends on (the program; for the language list, its tessdata folder) and
reused while they are unchanged, so a new ffmpeg or a new language pack is asked again.

The file is ``$MEDIA_WORKER_TOOL_CACHE`` (empty: no cache), by default under the venv
(``<sys.prefix>/var/cache/media-worker/tool-queries.json``).  The image writes it at build time
(``media-worker pipelines`` runs every check); elsewhere the first process that may write it does.
A cache that cannot be read or written is never an error: the query simply runs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from config.logs import get_logger

log = get_logger(__name__)
SCHEMA = "media-worker/tool-queries/v1"
_lock = threading.Lock()
_loaded: dict[str, dict[str, object]] | None = None


def cache_file() -> Path | None:
    env = os.environ.get("MEDIA_WORKER_TOOL_CACHE")
    if env is not None:
        return Path(env) if env else None
    return Path(sys.prefix) / "var" / "cache" / "media-worker" / "tool-queries.json"


def _signature(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _entries() -> dict[str, dict[str, object]]:
    global _loaded
    if _loaded is None:
        _loaded = {}
        if (path := cache_file()) is not None:
            try:
                doc = json.loads(path.read_bytes())
                if doc.get("schema") == SCHEMA and isinstance(doc.get("entries"), dict):
                    _loaded = doc["entries"]
            except (OSError, ValueError, AttributeError):
                pass
    return _loaded


def query(
    argv: list[str], ask: Callable[[], str], depends_on: Callable[[str], Iterable[str]] = lambda _: ()
) -> str:
    """``ask()``'s answer to ``argv`` (a program's output), from the cache while ``argv[0]`` and the
    files ``depends_on(answer)`` names are unchanged.  ``ask`` raises for an answer not to keep."""
    key = "\0".join(argv)
    with _lock:
        entry = _entries().get(key)
    if isinstance(entry, dict) and isinstance(entry.get("answer"), str):
        witnesses = entry.get("witnesses")
        if (
            isinstance(witnesses, dict)
            and witnesses
            and all(_signature(p) == s for p, s in witnesses.items())
        ):
            return str(entry["answer"])
    answer = ask()
    files = [argv[0], *depends_on(answer)]
    signatures = {p: _signature(p) for p in files}
    if all(s is not None for s in signatures.values()):
        _store(key, {"answer": answer, "witnesses": signatures})
    return answer


def _store(key: str, entry: dict[str, object]) -> None:
    with _lock:
        entries = _entries()
        entries[key] = entry
        path = cache_file()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # local disk, not the workspace
            tmp.write_text(json.dumps({"schema": SCHEMA, "entries": entries}, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # a read-only venv (the image at run time): the answer is still used
            log.debug("tool query cache %s not written: %s", path, exc)


def forget() -> None:
    """Drop what this process loaded (tests that change the cache file)."""
    global _loaded
    with _lock:
        _loaded = None
