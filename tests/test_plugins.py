"""Third-party pipelines: a throw-away package, installed for real, found through its entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli_env, failure_records, files_but_failure_records, json_lines, run_cli


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install tests/fixtures/mw_wordcount into a private site dir (not the project's venv)."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(REPO / "tests" / "fixtures" / "mw_wordcount", src)
    site = tmp / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert list(site.glob("mw_wordcount-*.dist-info/entry_points.txt"))
    return site


def test_plugin_is_listed_and_broken_one_is_not_fatal(plugin_site: Path) -> None:
    res = run_cli("pipelines", env=cli_env(PYTHONPATH=str(plugin_site), COLUMNS="300"))
    assert res.returncode == 0, res.stderr
    lines = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.count("│") > 2}
    assert "available" in lines["wordcount"] and "available" in lines["thumbnails"]
    assert "unavailable" in lines["broken"] and "ModuleNotFoundError" in lines["broken"]


def test_plugin_runs_through_the_cli(plugin_site: Path, workspace: Path) -> None:
    (workspace / "notes").mkdir()
    (workspace / "notes" / "a.txt").write_text("one two three\nfour\n")
    (workspace / "notes" / "b.jpg").write_bytes(b"not read")
    env = cli_env(PYTHONPATH=str(plugin_site))
    res = run_cli("run", "-w", str(workspace), "--pipeline", "wordcount", "--json", "notes", env=env)
    assert res.returncode == 0, res.stderr
    by_src = {r["source"]: r for r in json_lines(res.stdout)}
    assert by_src["notes/b.jpg"]["status"] == "skipped" and "not a .txt" in by_src["notes/b.jpg"]["reason"]
    ok = by_src["notes/a.txt"]
    assert ok["status"] == "ok"
    count = workspace / "processed/wordcount/count/notes/a.txt.json"
    assert json.loads(count.read_text()) == {"words": 4}
    assert (workspace / "processed/wordcount/upper/notes/a.txt.txt").read_text() == "ONE TWO THREE\nFOUR\n"
    manifest = json.loads((workspace / ok["manifest"]).read_text())
    assert [o["variant"] for o in manifest["outputs"]] == ["count", "upper"]


def test_failing_plugin_leaves_no_partial_outputs(plugin_site: Path, workspace: Path) -> None:
    (workspace / "a.txt").write_text("x y")
    env = cli_env(
        PYTHONPATH=str(plugin_site), MEDIA_WORKER_PLUGINS='{"wordcount": {"fail_after_first": true}}'
    )
    res = run_cli("run", "-w", str(workspace), "-p", "wordcount", "--json", "a.txt", env=env)
    assert res.returncode == 1
    (result,) = json_lines(res.stdout)
    assert result["status"] == "failed" and "fail after its first output" in result["error"]
    assert files_but_failure_records(workspace) == ["a.txt"]
    assert failure_records(workspace)["a.txt"]["error"] == result["error"]


def test_a_worker_crash_fails_only_that_file(plugin_site: Path, workspace: Path) -> None:
    for name, text in (("a.txt", "a b"), ("b.txt", "CRASH now"), ("c.txt", "c"), ("d.txt", "d d d")):
        (workspace / name).write_text(text)
    env = cli_env(PYTHONPATH=str(plugin_site))
    res = run_cli("run", "-w", str(workspace), "-p", "wordcount", "--json", "--workers", "2", ".", env=env)
    assert res.returncode == 1
    by_src = {r["source"]: r for r in json_lines(res.stdout)}
    assert sorted(by_src) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert by_src["b.txt"]["status"] == "failed" and by_src["b.txt"]["error_kind"] == "crash"
    for n in ("a.txt", "c.txt", "d.txt"):
        # a neighbour in flight when the pool broke may have finished first: its one-at-a-time retry then
        # finds its manifest (skipped, up to date) - done either way, never failed
        r = by_src[n]
        assert r["status"] == "ok" or r["reason"].startswith("up to date"), r
        manifest = json.loads((workspace / "processed/_manifests" / f"{n}.json").read_text())
        assert manifest["status"] == "ok"
