"""The one way to run a child process: every wrapper in :mod:`pipelines.tools` starts programs here.

:func:`run` maps every way a child can go wrong to our errors, the same for every program:

* the program cannot be started: ``ENOENT`` -> :class:`MissingDependencyError` naming it and how to
  install it (:class:`Program`); any other ``OSError`` -> :class:`ToolFailedError`;
* the job's :class:`~config.deadline.Deadline` passes -> the child's process group is stopped
  (SIGTERM, then SIGKILL after ``grace``) and :class:`JobTimeoutError` (retryable) is raised;
  a per-call ``timeout`` (a configured limit) stops it the same way but raises ``timeout_error``;
* a non-zero exit or a signal -> :class:`ToolFailedError` (or :class:`BadInputError` when the stderr
  tail matches the caller's ``bad_input`` pattern).

Every error keeps the last lines of the child's stderr in ``detail``.  Two ways to read output:
captured (stdout returned whole, for version probes and tesseract) or streamed (``on_stdout`` gets
each line while the child runs, e.g. ffmpeg's ``-progress``).  Wrappers never delete files: a failed
run leaves what the child wrote for the engine to remove.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from config.deadline import NO_DEADLINE, Deadline
from config.errors import (
    BadInputError,
    JobTimeoutError,
    MissingDependencyError,
    ToolFailedError,
    ToolTimeoutError,
)
from config.logs import get_logger

log = get_logger(__name__)
TAIL_LINES = 40
TAIL_CHARS = 4000
_JOIN_SECONDS = 2.0


@dataclass(frozen=True)
class Program:
    """An external program: the name messages use and how to install it."""

    name: str
    install: str  # e.g. "install the Debian package tesseract-ocr"

    def missing(self, why: str = "is not installed or not on PATH") -> MissingDependencyError:
        return MissingDependencyError(f"{self.name} {why}: {self.install}")


def which(command: str) -> str | None:
    """Absolute path of an executable ``command`` (a name on PATH or a path), or None."""
    return shutil.which(command)


def find(program: Program, command: str | None = None) -> str:
    """Absolute path of ``command`` (default: the program's name), or MissingDependencyError."""
    path = which(command or program.name)
    if path is None:
        raise program.missing()
    return path


@dataclass
class Completed:
    """A finished run.  ``stdout`` is empty in streaming mode; ``tail`` is the end of stderr."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    tail: str
    seconds: float


def last_line(tail: str) -> str:
    """The last non-empty line of a stderr tail (for one-line messages)."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no error message"


class _Tail:
    """The last ``TAIL_LINES`` lines (at most ``TAIL_CHARS``) of a stream, and optionally all of it."""

    def __init__(self, *, keep_all: bool) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.all: list[str] | None = [] if keep_all else None

    def add(self, line: str) -> None:
        self.lines.append(line.rstrip("\r\n"))
        if self.all is not None:
            self.all.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)[-TAIL_CHARS:]

    def whole(self) -> str:
        return "".join(self.all) if self.all is not None else self.text()


def _pump(stream: IO[bytes], sink: Callable[[str], None], name: str) -> None:
    """Read ``stream`` line by line to EOF; a failing sink is logged once and the stream still drained."""
    broken = False
    for raw in stream:
        if broken:
            continue
        try:
            sink(raw.decode("utf-8", "replace"))
        except Exception:  # a broken progress callback must not stop (or block) the child
            log.exception("reading the %s of a child process failed; ignoring the rest", name)
            broken = True


def run(
    args: Sequence[str],
    *,
    program: Program,
    what: str | None = None,
    deadline: Deadline = NO_DEADLINE,
    timeout: float | None = None,
    timeout_error: type[ToolTimeoutError] = ToolTimeoutError,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    on_stdout: Callable[[str], None] | None = None,
    bad_input: re.Pattern[str] | None = None,
    grace: float = 1.0,
    pass_fds: Sequence[int] = (),
) -> Completed:
    """Run ``args`` to completion within ``deadline`` and ``timeout`` (seconds); see the module doc.

    ``what`` names the call in messages (default: the program's name).  With ``check=False`` a
    non-zero exit is returned, not raised (probes that read the output anyway).  With ``on_stdout``
    each stdout line goes to it while the child runs (streaming); otherwise stdout is captured.
    ``pass_fds``: descriptors the child inherits under the same numbers (pipes it writes outputs into);
    every other descriptor is closed in the child.
    """
    what = what or program.name
    argv = [str(a) for a in args]
    if deadline.expired():
        raise JobTimeoutError(f"deadline reached before {what} could start")
    if cwd is not None and not Path(cwd).is_dir():
        raise ToolFailedError(f"cannot run {what}: working folder {cwd} does not exist")
    t0 = time.monotonic()
    proc = _start(argv, program, what, env, cwd, pass_fds)
    err = _Tail(keep_all=on_stdout is None)
    out = _Tail(keep_all=True)
    readers = _read(proc, err.add, on_stdout or out.add)
    by_deadline, stopped = _wait(proc, readers, deadline, timeout, grace)

    seconds = time.monotonic() - t0
    done = Completed(argv, proc.returncode, out.whole(), err.whole(), err.text(), seconds)
    if stopped and by_deadline:
        raise JobTimeoutError(f"{what} stopped at the job deadline after {seconds:.1f} s", detail=done.tail)
    if stopped:
        assert timeout is not None
        raise timeout_error(f"{what} took longer than {timeout:g} s", detail=done.tail)
    if check and proc.returncode != 0:
        raise failure(done, what, bad_input)
    return done


def _start(
    argv: list[str],
    program: Program,
    what: str,
    env: Mapping[str, str] | None,
    cwd: Path | None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """The child, in its own process group, dying with us; a program that cannot start is our error."""
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            cwd=cwd,
            close_fds=True,
            pass_fds=tuple(pass_fds),
            start_new_session=True,  # its own process group: a stop reaches anything it started
            preexec_fn=die_with_parent(),
        )
    except OSError as exc:
        raise _cannot_start(exc, program, argv, f"run {what}") from None


def _cannot_start(
    exc: OSError, program: Program, argv: Sequence[str], doing: str
) -> MissingDependencyError | ToolFailedError:
    """The one mapping of a child that could not start (``doing``: "run ffmpeg on …"): a missing program
    names how to install it, any other OSError is a tool failure."""
    if exc.errno == errno.ENOENT:
        return program.missing(f"not found ({argv[0]})")
    return ToolFailedError(f"cannot {doing} ({argv[0]}): {exc}")


def _read(
    proc: subprocess.Popen[bytes], on_stderr: Callable[[str], None], on_stdout: Callable[[str], None]
) -> list[threading.Thread]:
    """Started threads that feed each line of the child's stderr and stdout to the callbacks."""
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_pump, args=(proc.stderr, on_stderr, "stderr"), daemon=True),
        threading.Thread(target=_pump, args=(proc.stdout, on_stdout, "stdout"), daemon=True),
    ]
    for r in readers:
        r.start()
    return readers


def _wait(
    proc: subprocess.Popen[bytes],
    readers: list[threading.Thread],
    deadline: Deadline,
    timeout: float | None,
    grace: float,
) -> tuple[bool, bool]:
    """Wait for the child up to the nearer of the deadline and ``timeout``, stopping it there (or on
    any exception, e.g. Ctrl-C); the readers are finished either way.  Returns (the deadline is the
    nearer limit, the child was stopped)."""
    left = deadline.timeout(None)
    by_deadline = timeout is None or (left is not None and left <= timeout)
    limit = left if by_deadline else timeout
    stopped = False
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        stopped = True
        _stop(proc, grace=grace)
    except BaseException:  # KeyboardInterrupt, SystemExit: the child must not outlive us
        _stop(proc, grace=0.5)
        raise
    finally:
        _finish_readers(proc, readers)
    return by_deadline, stopped


def spawn(
    args: Sequence[str],
    *,
    program: Program,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a service (a server, a mount) that outlives this process; returns its pid.

    Unlike :func:`run` it is not waited for and not tied to this process's life: ``media-worker stack
    up`` returns while it runs.  Its own session (a stop by process group reaches what it started),
    stdin closed, stdout and stderr appended to ``log``; stopped by pid (see handlers/local/stack.py).
    """
    argv = [str(a) for a in args]
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                close_fds=True,
                start_new_session=True,
            )
    except OSError as exc:
        raise _cannot_start(exc, program, argv, f"start {program.name}") from None
    return proc.pid


def stream(args: Sequence[str], *, program: Program) -> subprocess.Popen[str]:
    """A child whose stdout is read line by line while it runs (an event stream); stderr discarded.

    It dies with the thread that started it (``PR_SET_PDEATHSIG``); the caller reads ``stdout`` and
    ends it with ``kill()``."""
    argv = [str(a) for a in args]
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            close_fds=True,
            preexec_fn=die_with_parent(),
        )
    except OSError as exc:
        raise _cannot_start(exc, program, argv, f"start {program.name}") from None


def failure(
    done: Completed, what: str, bad_input: re.Pattern[str] | None = None
) -> ToolFailedError | BadInputError:
    """The error for a finished run that failed: a signal or a non-zero exit, with the stderr tail."""
    code = done.returncode
    how = f"signal {-code}" if code < 0 else f"exit {code}"
    if code > 0 and bad_input is not None and bad_input.search(done.tail):
        return BadInputError(
            f"the source cannot be decoded ({what} {how}): {last_line(done.tail)}", detail=done.tail
        )
    return ToolFailedError(f"{what} failed ({how}): {last_line(done.tail)}", detail=done.tail)


_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = (
        ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    )
except OSError:  # pragma: no cover - no libc to ask
    _LIBC = None


def die_with_parent() -> Callable[[], None] | None:
    """What the child runs before exec: ask the kernel to SIGKILL it when this worker dies.

    A tool runs in its own session (so a stop reaches everything it started), which also means a SIGKILL
    of the worker (the OOM killer, a killed pool worker, ``kill -9``) would not reach it: an orphaned
    ffmpeg would keep writing outputs while a rerun takes the lease and writes the same paths.  Linux's
    ``PR_SET_PDEATHSIG`` ties the tool's life to the thread that started it (which waits for it)."""
    if _LIBC is None:
        return None
    libc, parent = _LIBC, os.getpid()

    def child() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before the line above: do not outlive it
            os.kill(os.getpid(), signal.SIGKILL)

    return child


def _stop(proc: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds, and reap the child."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group exists while the (unreaped) leader or a member lives
    except ProcessLookupError:
        pass
    except PermissionError:  # should not happen for our own child; fall back to the leader alone
        proc.send_signal(sig)


def _finish_readers(proc: subprocess.Popen[bytes], readers: Sequence[threading.Thread]) -> None:
    """Wait for stdout/stderr to reach EOF; if something the child started still holds them, kill it."""
    for r in readers:
        r.join(timeout=_JOIN_SECONDS)
    if any(r.is_alive() for r in readers):
        _signal_group(proc, signal.SIGKILL)  # the leader is reaped, but its group is still alive
        for r in readers:
            r.join(timeout=_JOIN_SECONDS)
    if not any(r.is_alive() for r in readers):  # never close a pipe a reader thread is still in
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
