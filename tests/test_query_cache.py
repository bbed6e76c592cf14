"""The tool query cache (pipelines/tools/query_cache.py): a Lambda init or a CLI run asks ffmpeg and
tesseract nothing once their answers are cached, and asks again when a program or a language pack
changes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli_env

from pipelines.tools import query_cache

# the Lambda init phase (settings, engine, every program the default rules need), counting the child
# processes it starts with an audit hook
INIT = """
import sys
started = []
sys.addaudithook(lambda event, args: started.append(args[0]) if event == "subprocess.Popen" else None)
import handlers.lambda_function
from pipelines.tools import ffmpeg
print(started, file=sys.stderr)
print(len(started), ffmpeg.located().path)
"""


def lambda_init(cache: Path | str, workspace: Path) -> tuple[int, str]:
    env = cli_env(
        AWS_LAMBDA_RUNTIME_API="127.0.0.1:9", MEDIA_WORKER_WORKSPACE=str(workspace),
        MEDIA_WORKER_TOOL_CACHE=str(cache),
    )  # fmt: skip
    res = subprocess.run([sys.executable, "-c", INIT], capture_output=True, text=True, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    started, ffmpeg = res.stdout.splitlines()[-1].split()  # after the log lines
    return int(started), ffmpeg


def test_a_second_lambda_init_starts_no_program(tmp_path: Path, workspace: Path) -> None:
    cache = tmp_path / "cache" / "tool-queries.json"
    first, ffmpeg = lambda_init(cache, workspace)
    assert first >= 4  # ffmpeg -version, -h protocol=file, -encoders; tesseract --version, --list-langs
    doc = json.loads(cache.read_text())
    assert doc["schema"] == "media-worker/tool-queries/v1"
    assert any(k.startswith(ffmpeg + "\0") for k in doc["entries"]), doc["entries"].keys()
    assert lambda_init(cache, workspace) == (0, ffmpeg)  # same choice, nothing asked
    # switched off (no cache): every init asks again
    assert lambda_init("", workspace)[0] == first


def program(path: Path, text: str) -> Path:
    path.write_text(f"#!/bin/sh\necho '{text}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_answers_are_asked_again_when_what_they_depend_on_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIA_WORKER_TOOL_CACHE", str(tmp_path / "q.json"))
    query_cache.forget()
    tool = program(tmp_path / "tool", "v1")
    packs = tmp_path / "packs"
    packs.mkdir()
    asked: list[str] = []

    def ask() -> str:
        out = subprocess.run([str(tool)], capture_output=True, text=True, check=True).stdout
        asked.append(out)
        return out

    def answer() -> str:
        return query_cache.query([str(tool), "--list"], ask, depends_on=lambda _: [str(packs)])

    assert answer() == "v1\n" and answer() == "v1\n" and len(asked) == 1
    query_cache.forget()  # a new process reads the file
    assert answer() == "v1\n" and len(asked) == 1
    program(tool, "v2 (a longer answer)")  # the program replaced
    assert answer() == "v2 (a longer answer)\n" and len(asked) == 2
    (packs / "deu.traineddata").write_bytes(b"")  # a language pack added
    assert answer() == "v2 (a longer answer)\n" and len(asked) == 3
    assert answer() and len(asked) == 3


def test_an_unwritable_cache_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    monkeypatch.setenv("MEDIA_WORKER_TOOL_CACHE", str(ro / "sub" / "q.json"))
    query_cache.forget()
    tool = program(tmp_path / "tool", "v1")
    calls = []

    def ask() -> str:
        calls.append(1)
        return "answer"

    try:
        if os.geteuid() == 0:  # root writes anywhere: use a path no one can create
            monkeypatch.setenv("MEDIA_WORKER_TOOL_CACHE", "/proc/no/such/q.json")
            query_cache.forget()
        assert query_cache.query([str(tool)], ask) == "answer"
        assert query_cache.query([str(tool)], ask) == "answer"  # kept in memory
        assert calls == [1]
    finally:
        os.chmod(ro, 0o755)
        query_cache.forget()
