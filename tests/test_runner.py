"""The one process runner (:mod:`pipelines.tools.runner`), with real programs: sh, sleep, false."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from config.deadline import Deadline
from config.errors import (
    BadInputError,
    JobTimeoutError,
    MissingDependencyError,
    ToolFailedError,
    ToolTimeoutError,
)
from pipelines.tools import runner

SH = runner.Program("sh", "install the Debian package dash")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper that is not ours counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pid: int, seconds: float = 3.0) -> bool:
    limit = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > limit:
            return False
        time.sleep(0.02)
    return True


def test_captured_mode_returns_stdout_and_stderr() -> None:
    done = runner.run(["sh", "-c", "echo out; echo err >&2"], program=SH)
    assert done.returncode == 0 and done.stdout == "out\n" and done.stderr == "err\n"
    assert done.tail == "err" and done.args == ["sh", "-c", "echo out; echo err >&2"]


def test_a_missing_program_names_it_and_how_to_install_it(tmp_path: Path) -> None:
    prog = runner.Program("frobnicate", "install the Debian package frob-tools")
    with pytest.raises(MissingDependencyError) as info:
        runner.run([str(tmp_path / "frobnicate"), "--version"], program=prog)
    assert "frobnicate" in str(info.value) and "frob-tools" in str(info.value)
    assert info.value.kind == "dependency" and not info.value.retryable
    with pytest.raises(MissingDependencyError, match=r"frobnicate .*frob-tools"):
        runner.find(prog)  # not on PATH either


def test_every_way_of_starting_a_child_maps_a_missing_program_the_same(tmp_path: Path) -> None:
    """run, spawn (a daemon with its log) and stream (an event stream) share one mapping of a child
    that cannot start: missing -> MissingDependencyError naming the install hint; else a tool failure."""
    prog = runner.Program("frobnicate", "install the Debian package frob-tools")
    missing = [str(tmp_path / "frobnicate")]
    starters = [
        lambda argv: runner.run(argv, program=prog),
        lambda argv: runner.spawn(argv, program=prog, log=tmp_path / "frob.log"),
        lambda argv: runner.stream(argv, program=prog),
    ]
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    for start in starters:
        with pytest.raises(MissingDependencyError, match="frob-tools"):
            start(missing)
        with pytest.raises(ToolFailedError, match=r"cannot (run|start)") as info:
            start([str(script)])
        assert not isinstance(info.value, MissingDependencyError)


def test_find_returns_the_absolute_path() -> None:
    assert runner.find(SH) == runner.which("sh") and Path(runner.find(SH)).is_absolute()


def test_another_os_error_is_a_tool_failure(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)  # not executable: EACCES, not a missing program
    with pytest.raises(ToolFailedError, match="cannot run tool") as info:
        runner.run([str(script)], program=runner.Program("tool", "n/a"), what="tool")
    assert not isinstance(info.value, MissingDependencyError)


def test_a_non_zero_exit_is_a_tool_failure_with_the_stderr_tail() -> None:
    script = "for i in $(seq 1 200); do echo line $i >&2; done; echo 'fatal: no good' >&2; exit 3"
    with pytest.raises(ToolFailedError) as info:
        runner.run(["sh", "-c", script], program=SH, what="the tool")
    exc = info.value
    assert str(exc) == "the tool failed (exit 3): fatal: no good"
    assert exc.detail is not None and exc.detail.endswith("line 200\nfatal: no good")
    lines = exc.detail.splitlines()
    assert len(lines) == runner.TAIL_LINES and len(exc.detail) <= runner.TAIL_CHARS  # bounded
    assert exc.kind == "tool" and not exc.retryable


def test_false_fails_and_check_false_returns_the_code() -> None:
    with pytest.raises(ToolFailedError, match=r"false failed \(exit 1\): no error message"):
        runner.run(["false"], program=runner.Program("false", "n/a"))
    assert runner.run(["false"], program=runner.Program("false", "n/a"), check=False).returncode == 1


def test_a_signal_is_reported_as_such() -> None:
    with pytest.raises(ToolFailedError, match=r"failed \(signal 9\)"):
        runner.run(["sh", "-c", "kill -9 $$"], program=SH)


def test_bad_input_pattern_blames_the_input() -> None:
    pattern = re.compile("Invalid data found")
    with pytest.raises(BadInputError, match=r"cannot be decoded \(sh exit 1\): x: Invalid data found"):
        runner.run(["sh", "-c", "echo 'x: Invalid data found' >&2; exit 1"], program=SH, bad_input=pattern)
    with pytest.raises(ToolFailedError) as info:  # another message: the tool's failure
        runner.run(["sh", "-c", "echo 'out of memory' >&2; exit 1"], program=SH, bad_input=pattern)
    assert not isinstance(info.value, BadInputError)


def test_the_deadline_stops_the_process_group_and_is_a_retryable_timeout() -> None:
    """sh starts a grandchild (its pid on stdout) and waits: at the deadline both are gone."""
    pids: list[int] = []
    t0 = time.monotonic()
    with pytest.raises(JobTimeoutError, match="sh stopped at the job deadline") as info:
        runner.run(
            ["sh", "-c", "echo started >&2; sleep 30 & echo $!; echo $$; wait"],
            program=SH,
            deadline=Deadline(time.monotonic() + 0.5),
            on_stdout=lambda line: pids.append(int(line)),
            grace=0.5,
        )
    assert len(pids) == 2
    assert all(wait_gone(pid) for pid in pids), [p for p in pids if alive(p)]
    assert time.monotonic() - t0 < 5
    assert info.value.retryable and info.value.kind == "timeout"
    assert info.value.detail == "started"  # the stderr tail is kept on a timeout too


def test_a_child_that_ignores_sigterm_is_killed() -> None:
    pids: list[int] = []
    with pytest.raises(JobTimeoutError):
        runner.run(
            ["sh", "-c", "trap '' TERM; echo $$; while :; do sleep 0.05; done"],
            program=SH,
            deadline=Deadline(time.monotonic() + 0.3),
            on_stdout=lambda line: pids.append(int(line)),
            grace=0.2,
        )
    assert pids and wait_gone(pids[0])


def test_an_expired_deadline_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(JobTimeoutError, match="before sh could start"):
        runner.run(["sh", "-c", f"touch {marker}"], program=SH, deadline=Deadline(time.monotonic() - 1))
    assert not marker.exists()


def test_the_per_call_timeout_is_a_tool_timeout_not_a_job_timeout() -> None:
    class PageTimeout(ToolTimeoutError):
        kind = "timeout_page"

    with pytest.raises(PageTimeout, match=r"sleep on page 1 took longer than 0\.2 s") as info:
        runner.run(
            ["sleep", "30"],
            program=runner.Program("sleep", "n/a"),
            what="sleep on page 1",
            timeout=0.2,
            timeout_error=PageTimeout,
            deadline=Deadline(time.monotonic() + 60),  # the nearer limit decides which error it is
        )
    assert not info.value.retryable
    with pytest.raises(JobTimeoutError):
        runner.run(
            ["sleep", "30"],
            program=runner.Program("sleep", "n/a"),
            timeout=60,
            deadline=Deadline(time.monotonic() + 0.2),
        )


def test_streaming_mode_sees_lines_while_the_child_runs() -> None:
    seen: list[tuple[str, float]] = []
    t0 = time.monotonic()
    done = runner.run(
        ["sh", "-c", "echo progress=1; sleep 0.5; echo progress=end"],
        program=SH,
        on_stdout=lambda line: seen.append((line.strip(), time.monotonic() - t0)),
    )
    assert [line for line, _ in seen] == ["progress=1", "progress=end"]
    assert seen[0][1] < 0.4 <= seen[1][1]  # the first line arrived before the child finished
    assert done.stdout == ""  # streamed, not captured


def test_a_broken_stdout_callback_does_not_block_the_child() -> None:
    def broken(line: str) -> None:
        raise RuntimeError("bug")

    done = runner.run(["sh", "-c", "seq 1 100000"], program=SH, on_stdout=broken, timeout=20)
    assert done.returncode == 0


def test_env_and_cwd_are_passed(tmp_path: Path) -> None:
    done = runner.run(["/bin/sh", "-c", "echo $FOO; pwd"], program=SH, env={"FOO": "bar"}, cwd=tmp_path)
    assert done.stdout.split() == ["bar", os.path.realpath(tmp_path)]
    with pytest.raises(ToolFailedError, match="does not exist"):
        runner.run(["sh", "-c", "true"], program=SH, cwd=tmp_path / "missing")
