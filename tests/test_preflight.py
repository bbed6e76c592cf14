"""A missing external program is checked once, before any file is processed: the CLI exits 3 with one
message naming the program and how to install it; under the Lambda runtime it is an initialisation
error.  Sources whose pipelines need nothing missing are not held up by it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SAMPLES, cli_env, run_cli
from runtime_api import RuntimeApi
from test_handlers_runtime import lambda_env

NO_TOOLS = "/nonexistent"  # a PATH on which no tesseract is found (ffmpeg comes from imageio-ffmpeg)


def test_missing_tesseract_stops_the_cli_before_any_file(workspace: Path) -> None:
    (workspace / "in").mkdir()
    for name in ("photo.jpg", "document.pdf", "scan.pdf"):
        shutil.copy(SAMPLES / name, workspace / "in" / name)
    res = run_cli("run", "-w", str(workspace), "in", env=cli_env(PATH=NO_TOOLS))
    assert res.returncode == 3, (res.returncode, res.stderr[-2000:])
    text = " ".join(res.stderr.split())
    assert text.count("tesseract is not installed") == 1, text
    assert "apt-get install tesseract-ocr" in text, text
    assert not (workspace / "processed").exists()  # nothing was processed


def test_sources_that_need_no_missing_program_still_run(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "photo.jpg", workspace / "in/photo.jpg")
    res = run_cli("run", "-w", str(workspace), "in", "--json", env=cli_env(PATH=NO_TOOLS))
    assert res.returncode == 0, res.stderr[-2000:]
    assert [json.loads(x)["status"] for x in res.stdout.splitlines()] == ["ok"]


def test_missing_tesseract_is_a_lambda_init_error(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with RuntimeApi() as api:
        env = lambda_env(api, ws, PATH=NO_TOOLS)
        proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "handlers.lambda_function.handler"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            posted = api.wait(timeout=120)
        finally:
            proc.kill()
            log = proc.communicate(timeout=30)[0]
    assert posted.kind == "init-error", (posted, log[-2000:])
    assert posted.body["errorType"] == "MissingDependencyError", posted.body
    assert "tesseract is not installed" in posted.body["errorMessage"], posted.body
