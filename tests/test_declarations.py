"""Each pipeline declares, once, the file types it takes and the options model it uses; the default
rules, ``accepts()``, the recursion guard and ``media-worker pipelines`` are derived from that, for the
built-ins and third-party pipelines alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from avtools import make_media
from conftest import SAMPLES, cli_env, json_lines, run_cli
from test_plugins import plugin_site  # noqa: F401 - the pip-installed mw_wordcount fixture

from config.rules import select_pipelines
from config.settings import load_settings
from pipelines.core.engine import Engine, rules_in_force
from pipelines.core.registry import load_registry
from pipelines.spec import SourceInfo

# what a new user's old files are called; before the declarations, the default rules missed these
OLD_NAMES = {
    "old.mpg": ["transcode", "video_thumbnails"],
    "old.MPEG": ["transcode", "video_thumbnails"],
    "old.flv": ["transcode", "video_thumbnails"],
    "old.aif": ["transcode"],
    "old.aiff": ["transcode"],
    "old.wma": ["transcode"],
    "old.jpe": ["thumbnails"],
    "doc.pdf": ["ocr", "thumbnails"],
    "scan.tif": ["thumbnails"],  # OCR takes images only where a rule says so
}


@pytest.mark.parametrize(("name", "expected"), sorted(OLD_NAMES.items()))
def test_default_rules_route_every_declared_type(name: str, expected: list[str], tmp_path: Path) -> None:
    s = load_settings(None, workspace=tmp_path)
    assert select_pipelines(f"in/{name}", rules_in_force(s, load_registry()), s.exclude) == expected


def test_default_rules_are_the_declarations(tmp_path: Path) -> None:
    """Every suffix a pipeline routes is matched by the default rules, and accepted by that pipeline."""
    reg = load_registry()
    s = load_settings(None, workspace=tmp_path)
    rules = rules_in_force(s, reg)
    for name, p in reg.pipelines.items():
        assert p.inputs, f"{name} declares no inputs"
        routed = p.inputs.keys() if p.routed is None else p.routed
        for suffix in p.inputs:
            picked = name in select_pipelines(f"x/a.{suffix.upper()}", rules, s.exclude)
            assert picked == (suffix in routed), (name, suffix)
            assert p.accepts(SourceInfo(f"x/a.{suffix}", 1, 0), s) is True
            assert "/" in p.inputs[suffix]  # a media type
        assert p.accepts(SourceInfo("x/a.nope", 1, 0), s) is not True


def test_old_mpg_and_flv_are_processed(workspace: Path) -> None:
    """The files that came back "no rule matches this file": transcoded and postered by default."""
    (workspace / "in").mkdir()
    make_media(workspace / "in/old.mpg", "-c:v", "mpeg2video", "-c:a", "mp2", seconds=2)
    make_media(workspace / "in/old.flv", "-c:v", "flv", "-c:a", "libmp3lame", "-ar", "44100", seconds=2)
    res = run_cli("run", "-w", str(workspace), "--json", "in")
    results = {r["source"]: r for r in json_lines(res.stdout)}
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("in/old.mpg", "in/old.flv"):
        assert results[name]["status"] == "ok", results[name]
        pipelines = {
            o["pipeline"] for o in json.loads((workspace / results[name]["manifest"]).read_text())["outputs"]
        }
        assert pipelines == {"transcode", "video_thumbnails"}


def test_plugin_options_are_validated_by_its_own_model(plugin_site: Path, workspace: Path) -> None:  # noqa: F811
    (workspace / "a.txt").write_text("x y")
    env = cli_env(
        PYTHONPATH=str(plugin_site), MEDIA_WORKER_PLUGINS='{"wordcount": {"fail_after_frist": true}}'
    )
    res = run_cli("run", "-w", str(workspace), "a.txt", env=env)
    assert res.returncode == 2, res
    text = " ".join(res.stderr.split())
    assert "plugins.wordcount.fail_after_frist: unknown key" in text, text
    env["MEDIA_WORKER_PLUGINS"] = '{"wordcount": {"fail_after_first": "sometimes"}}'
    res = run_cli("run", "-w", str(workspace), "a.txt", env=env)
    assert res.returncode == 2 and "plugins.wordcount.fail_after_first" in " ".join(res.stderr.split())


def test_plugin_takes_its_declared_types_by_default(plugin_site: Path, workspace: Path) -> None:  # noqa: F811
    (workspace / "notes").mkdir()
    (workspace / "notes/a.txt").write_text("one two")
    shutil.copy(SAMPLES / "photo.jpg", workspace / "notes/b.jpg")
    res = run_cli("run", "-w", str(workspace), "--json", "notes", env=cli_env(PYTHONPATH=str(plugin_site)))
    by = {r["source"]: r for r in json_lines(res.stdout)}
    assert by["notes/a.txt"]["status"] == "ok" and by["notes/b.jpg"]["status"] == "ok", by
    assert json.loads((workspace / "processed/wordcount/count/notes/a.txt.json").read_text()) == {"words": 2}


def test_recursion_guard_covers_plugin_outputs(plugin_site: Path, workspace: Path) -> None:  # noqa: F811
    """Sidecar layout: wordcount's planned ``upper`` output (a.txt.wordcount.upper.txt) would be taken
    for a new .txt source: refused at start-up, before any file, with the exclude that fixes it."""
    env = cli_env(
        PYTHONPATH=str(plugin_site),
        MEDIA_WORKER_LAYOUT__PRESET="sidecar",
        MEDIA_WORKER_RULES='[{"include": ["*.txt"], "pipelines": ["wordcount"]}]',
    )
    (workspace / "a.txt").write_text("x")
    res = run_cli("run", "-w", str(workspace), "a.txt", env=env)
    text = " ".join(res.stderr.split())
    assert res.returncode == 2 and "wordcount.upper.txt" in text and "exclude" in text, text
    assert sorted(p.name for p in workspace.iterdir()) == ["a.txt"]


def test_engine_rules_are_configured_rules_when_given(tmp_path: Path) -> None:
    s = load_settings(None, workspace=tmp_path, rules=[{"include": ["*.png"], "pipelines": ["ocr"]}])
    eng = Engine(s)
    assert [r.pipelines for r in eng.rules] == [["ocr"]]
    assert eng.pipelines_for(["a.png", "b.jpg"]) == ["ocr"]


def test_pipelines_listing_shows_the_declared_types(plugin_site: Path) -> None:  # noqa: F811
    res = run_cli("pipelines", env=cli_env(PYTHONPATH=str(plugin_site), COLUMNS="1000"))
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.count("│") > 2}
    assert ".mpg*" in rows["transcode"] and ".flv*" in rows["video_thumbnails"]
    assert ".pdf*" in rows["ocr"] and ".png " in rows["ocr"]  # images: taken, not routed by default
    assert ".txt*" in rows["wordcount"]
