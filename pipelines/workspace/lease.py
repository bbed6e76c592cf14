"""One writer per source: a lease file beside the manifest, created with ``O_EXCL``.

NFS v4.1 (S3 Files) makes an exclusive create atomic, and S3 Files has no hard links, so the classic
link()-based lock file (and libraries built on it) is not an option.  The lease holds its owner (a random
id), host, pid and a wall-clock expiry; the holder renews it every third of its TTL while the job runs
and deletes it when the job ends.  Another worker waits (bounded by ``lease.wait_seconds`` and its
deadline) and then re-reads the manifest - usually ``skipped`` - or reports a retryable ``busy``; it never
writes.  A lease whose expiry is more than ``lease.clock_skew_seconds`` past is taken over: the holder
crashed.  Failure modes and what the design accepts: docs/leases.md.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.deadline import Deadline
from config.errors import BusyError, RetryableError
from config.logs import get_logger
from config.settings import LeaseSettings
from pipelines.workspace.mount import Workspace

log = get_logger(__name__)
VERIFY_DELAY = 0.05  # after a create: re-read once, so a takeover racing ours is seen before any write
POLL_FIRST, POLL_MAX = 0.1, 1.0


def _process_space() -> str:
    """This kernel boot and pid namespace: a pid means the same process only within one of them."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


PROCESS_SPACE = _process_space()


@dataclass(frozen=True)
class Holder:
    owner: str
    host: str
    pid: int
    expires: float  # wall clock (time.time()): the lease is read on other hosts
    space: str = ""

    @classmethod
    def parse(cls, data: bytes | None) -> Holder | None:
        try:
            doc = json.loads(data or b"")
            return cls(
                str(doc["owner"]),
                str(doc["host"]),
                int(doc["pid"]),
                float(doc["expires"]),
                str(doc.get("space", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def is_dead_here(self) -> bool:
        """The holder ran in this very pid namespace and its process is gone (a crashed pool worker):
        no need to wait for the expiry."""
        if not PROCESS_SPACE or self.space != PROCESS_SPACE or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False


class Lease:
    """A held lease on ``relpath`` (the lease file's workspace path)."""

    def __init__(self, ws: Workspace, relpath: str, settings: LeaseSettings) -> None:
        self.ws, self.relpath, self.settings = ws, relpath, settings
        self.owner = uuid.uuid4().hex
        self.lost = False  # set when another worker took the lease over while we held it
        self._checked = -math.inf  # time.monotonic() of the last check (holds()) that found us the holder
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- the file ------------------------------------------------------------------------------
    def _doc(self) -> bytes:
        doc: dict[str, Any] = {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "space": PROCESS_SPACE,
            "acquired": time.time(),
            "expires": time.time() + self.settings.ttl_seconds,
        }
        return json.dumps(doc).encode()

    def _holder(self) -> Holder | None:
        return Holder.parse(self.ws.read_small(self.relpath, limit=4096))

    def _expired(self, holder: Holder | None) -> bool:
        """Expired beyond the tolerated clock skew.  An unreadable lease (between another worker's
        create and its write, or damaged) counts as held for one TTL from the file's mtime."""
        now = time.time()
        if holder is not None and holder.is_dead_here():
            return True
        if holder is None:
            try:
                mtime = self.ws.stat_source(self.relpath).st_mtime
            except Exception:  # gone meanwhile: nothing to take over
                return False
            return now > mtime + self.settings.ttl_seconds + self.settings.clock_skew_seconds
        return now > holder.expires + self.settings.clock_skew_seconds

    # -- acquire / renew / release --------------------------------------------------------------
    def acquire(self, deadline: Deadline) -> None:
        """Hold the lease, waiting for another holder at most ``wait_seconds`` (and never past the
        deadline); :class:`BusyError` (retryable) if it is still held then."""
        give_up = time.monotonic() + min(self.settings.wait_seconds, deadline.remaining())
        poll = POLL_FIRST
        contended = False  # this call saw a lease file (held or stale): a takeover may race our create
        while True:
            if self.ws.create_exclusive(self.relpath, self._doc()):
                if not contended:  # no lease was there: nothing to race (docs/leases.md, the 50 ms re-read)
                    self._start_renewing()
                    return
                time.sleep(VERIFY_DELAY)
                mine = self._holder()
                if mine is not None and mine.owner == self.owner:
                    self._start_renewing()
                    return
                continue  # a takeover raced ours and won: look again
            contended = True
            holder = self._holder()
            if self._expired(holder):
                again = self._holder()
                if again == holder:  # still the stale one: take it over
                    log.warning(
                        "taking over the expired lease %s (%s)",
                        self.relpath,
                        f"{holder.host} pid {holder.pid}" if holder else "unreadable",
                    )
                    self.ws.remove([self.relpath])
                continue
            if time.monotonic() >= give_up:
                who = f" by {holder.host} pid {holder.pid}" if holder else ""
                until = (
                    f" (lease until {time.strftime('%H:%M:%S', time.gmtime(holder.expires))} UTC)"
                    if holder
                    else ""
                )
                raise BusyError(f"being processed{who}{until}; retry later")
            time.sleep(min(poll, max(0.0, give_up - time.monotonic())))
            poll = min(poll * 2, POLL_MAX)

    def _start_renewing(self) -> None:
        self._renewer = threading.Thread(target=self._renew, name="lease-renew", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.settings.ttl_seconds / 3):
            holder = self._holder()
            if holder is None or holder.owner != self.owner:
                self.lost = True
                log.error("lease %s was taken over by another worker", self.relpath)
                return
            self.ws.write_file(self.relpath, self._doc())

    def check(self) -> None:
        """Before the commit (the manifest): raise if another worker took the lease over (seen by the
        renewer, or now: one small read, so a job shorter than a renewal period is checked too)."""
        if not self.holds():
            raise RetryableError("another worker took this source's lease over while it was processed")

    def holds(self) -> bool:
        """Whether the lease is still ours (one small read, unless the renewer saw it taken over).  A
        job that lost it deletes nothing it wrote: those paths are the new holder's."""
        if not self.lost:
            holder = self._holder()
            self.lost = holder is None or holder.owner != self.owner
        self._checked = -math.inf if self.lost else time.monotonic()
        return not self.lost

    def release(self) -> None:
        """Delete the lease if it is still ours.  Right after a check() that found it ours (the commit)
        it is not read again: nobody takes over a lease before it expires, ``ttl_seconds`` at least,
        so the manifest's cost ledger holds every read the job makes."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if time.monotonic() - self._checked < min(1.0, self.settings.ttl_seconds / 3):
            self.ws.remove([self.relpath])
            self.ws.prune_empty_parents(self.relpath)
            return
        holder = self._holder()
        if holder is not None and holder.owner == self.owner:
            self.ws.remove([self.relpath])
            self.ws.prune_empty_parents(self.relpath)
