"""End to end through the CLI: thumbnails, manifest, idempotency, failures, exit codes, path escapes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, add_samples, cli_env, json_lines, run_cli
from PIL import Image

SIZES = {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def expected_fit(src: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / src[0], box[1] / src[1], 1.0)
    return round(src[0] * scale), round(src[1] * scale)


def test_thumbnails_manifest_and_skip(workspace: Path) -> None:
    add_samples(workspace, "photo.jpg", "logo.png")
    res = run_cli("run", "-w", str(workspace), "--json", "in")
    assert res.returncode == 0, res.stderr
    results = {r["source"]: r for r in json_lines(res.stdout)}
    assert set(results) == {"in/photo.jpg", "in/logo.png"}
    assert all(r["status"] == "ok" for r in results.values())

    # photo.jpg is stored 1600x1200 with EXIF orientation 6: displayed 1200x1600 (portrait)
    for size, box in SIZES.items():
        for ext, fmt in (("jpg", "JPEG"), ("webp", "WEBP")):
            out = workspace / f"processed/thumbnails/{size}/in/photo.jpg.{ext}"
            with Image.open(out) as im:
                assert im.format == fmt
                w, h = im.size
                ew, eh = expected_fit((1200, 1600), box)
                assert abs(w - ew) <= 1 and abs(h - eh) <= 1, (size, im.size)
                assert h > w  # orientation applied
                im = im.convert("RGB")
                # the red marker drawn at the stored top-left ends up at the displayed top-right
                r, g, b = im.getpixel((w - 1 - w // 40, h // 40))
                assert r > 180 and g < 90 and b < 90, (size, ext, (r, g, b))
            if fmt == "JPEG":
                assert out.read_bytes()[:2] == b"\xff\xd8"
                with Image.open(out) as im:
                    assert im.info.get("progressive") or im.info.get("progression")

    # logo.png has alpha: flattened onto white in JPEG, kept in WebP
    with Image.open(workspace / "processed/thumbnails/thumb/in/logo.png.webp") as im:
        assert im.mode == "RGBA" and im.getextrema()[3][0] < 255
    with Image.open(workspace / "processed/thumbnails/thumb/in/logo.png.jpg") as im:
        assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)

    # the manifest: written last, lists every output with its real size and sha256
    photo = results["in/photo.jpg"]
    mpath = workspace / photo["manifest"]
    assert photo["manifest"] == "processed/_manifests/in/photo.jpg.json"
    manifest = json.loads(mpath.read_text())
    src_stat = (workspace / "in/photo.jpg").stat()
    assert manifest["status"] == "ok"
    assert manifest["source"] == {
        "path": "in/photo.jpg",
        "size": src_stat.st_size,
        "mtime_ns": src_stat.st_mtime_ns,
        "version_id": None,
        "etag": None,
    }
    assert len(manifest["outputs"]) == 6 and sorted(o["path"] for o in manifest["outputs"]) == sorted(
        photo["outputs"]
    )
    for o in manifest["outputs"]:
        data = (workspace / o["path"]).read_bytes()
        assert o["size"] == len(data) and o["sha256"] == hashlib.sha256(data).hexdigest()
        assert o["pipeline"] == "thumbnails" and o["variant"] in SIZES
        assert (workspace / o["path"]).stat().st_mtime_ns <= mpath.stat().st_mtime_ns
    assert "pillow" in manifest["tools"] and len(manifest["config_hash"]) == 64
    assert set(manifest["timings"]) == {"thumbnails"}

    # second run: skipped without work, outputs untouched
    before = {p: (workspace / p).stat().st_mtime_ns for p in files_under(workspace)}
    res2 = run_cli("run", "-w", str(workspace), "--json", "in")
    assert res2.returncode == 0
    assert [r["status"] for r in json_lines(res2.stdout)] == ["skipped", "skipped"]
    assert all("up to date" in r["reason"] for r in json_lines(res2.stdout))
    assert {p: (workspace / p).stat().st_mtime_ns for p in files_under(workspace)} == before

    # a config change that alters outputs reprocesses; the manifest's config hash follows it
    env = cli_env(MEDIA_WORKER_THUMBNAILS__JPEG_QUALITY="60")
    res3 = run_cli("run", "-w", str(workspace), "--json", "in/photo.jpg", env=env)
    (r3,) = json_lines(res3.stdout)
    assert r3["status"] == "ok"
    assert json.loads(mpath.read_text())["config_hash"] != manifest["config_hash"]

    # a changed source (new mtime) is reprocessed too
    os.utime(workspace / "in/logo.png", ns=(src_stat.st_atime_ns, src_stat.st_mtime_ns + 10**9))
    res4 = run_cli("run", "-w", str(workspace), "--json", "in/logo.png")
    assert [r["status"] for r in json_lines(res4.stdout)] == ["ok"]


def test_bad_input_fails_per_file_and_batch_goes_on(workspace: Path) -> None:
    add_samples(workspace, "photo.jpg")
    data = (SAMPLES / "photo.jpg").read_bytes()
    (workspace / "in/cut.jpg").write_bytes(data[: len(data) // 3])
    (workspace / "in/empty.png").write_bytes(b"")
    (workspace / "in/notes.JPG").write_bytes(b"this is text, not a JPEG")
    res = run_cli("run", "-w", str(workspace), "--json", "--workers", "2", "in")
    assert res.returncode == 1
    results = {r["source"]: r for r in json_lines(res.stdout)}
    assert results["in/photo.jpg"]["status"] == "ok", (results["in/photo.jpg"], res.stderr)
    for bad in ("in/cut.jpg", "in/empty.png", "in/notes.JPG"):
        r = results[bad]
        assert r["status"] == "failed" and r["error_kind"] == "bad_input", r
        assert r["error"] and r["outputs"] == [] and r["manifest"] is None
    written = files_under(workspace / "processed")
    # outputs only for the good photo; each bad file left only its failure record, saying why
    assert written and all("photo.jpg" in p for p in written if not p.endswith(".failed"))
    records = {p for p in written if p.endswith(".failed")}
    assert records == {f"_manifests/{b}.json.failed" for b in ("in/cut.jpg", "in/empty.png", "in/notes.JPG")}
    for bad in ("in/cut.jpg", "in/empty.png", "in/notes.JPG"):
        record = json.loads((workspace / f"processed/_manifests/{bad}.json.failed").read_text())
        assert record["source"]["path"] == bad and record["error_kind"] == "bad_input"
        assert record["error"] == results[bad]["error"]


def test_exit_codes(workspace: Path, tmp_path: Path) -> None:
    add_samples(workspace, "logo.png")
    assert run_cli("run", "-w", str(workspace), "in").returncode == 0
    assert run_cli("run", "-w", str(workspace), "--no-such-option", "in").returncode == 2
    res = run_cli("run", "-w", str(workspace), "-p", "nope", "in")
    assert res.returncode == 2 and "unknown pipeline 'nope': no pipeline of that name" in res.stderr
    assert run_cli("run", "-w", str(tmp_path / "missing"), "in").returncode == 2
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[limits]\nmax_image_pixels = -1\n")
    res = run_cli("run", "-w", str(workspace), "--config", str(bad_cfg), "in")
    assert res.returncode == 2 and "limits.max_image_pixels" in res.stderr


@pytest.mark.parametrize("arg", ["../outside.jpg", "/etc/hostname", "in/../../outside.jpg"])
def test_path_escape_arguments_are_refused(workspace: Path, arg: str) -> None:
    (workspace.parent / "outside.jpg").write_bytes((SAMPLES / "photo.jpg").read_bytes())
    res = run_cli("run", "-w", str(workspace), "--json", arg)
    assert res.returncode == 2 and "error" in res.stderr
    assert files_under(workspace) == []


def test_symlink_out_of_workspace_fails_cleanly(workspace: Path) -> None:
    outside = workspace.parent / "secret"
    outside.mkdir()
    shutil.copy(SAMPLES / "photo.jpg", outside / "private.jpg")
    (workspace / "in").mkdir()
    (workspace / "in/link.jpg").symlink_to(outside / "private.jpg")
    (workspace / "in/dirlink").symlink_to(outside)
    res = run_cli("run", "-w", str(workspace), "--json", "in")  # found by the walk: a per-file failure
    assert res.returncode == 1
    (r,) = json_lines(res.stdout)
    assert r["status"] == "failed" and "outside the workspace" in r["error"]
    res = run_cli("run", "-w", str(workspace), "--json", "in/link.jpg")  # named on the command line
    assert res.returncode == 2 and "outside the workspace" in res.stderr
    assert files_under(workspace) == ["in/dirlink", "in/link.jpg"]
    assert sorted(p.name for p in outside.iterdir()) == ["private.jpg"]


def test_demo(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    res = run_cli("demo", "--workspace", str(ws))
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("photo.jpg", "logo.png", "page.png"):
        with Image.open(ws / f"processed/thumbnails/thumb/sample_media/{name}.webp") as im:
            assert max(im.size) == 150
    # it ends with a short summary: one line per source (status, number of outputs, time), a total,
    # and the report's path with how to open it - not every output's path
    lines = res.stdout.splitlines()
    sources = sorted(p.name for p in SAMPLES.iterdir() if p.suffix not in (".py", ".md", ".txt"))
    assert len(lines) == len(sources) + 3, res.stdout
    total = 0
    for name, line in zip(sources, lines, strict=False):
        source, status, count, word, seconds, unit = line.split()
        assert (source, status, word, unit) == (f"sample_media/{name}", "ok", "outputs", "s"), line
        manifest = json.loads((ws / f"processed/_manifests/sample_media/{name}.json").read_text())
        assert int(count) == len(manifest["outputs"]) > 0, line
        assert float(seconds) >= sum(manifest["timings"].values()) - 0.01, line  # the job's whole time
        total += int(count)
    assert lines[-3] == f"{len(sources)} source(s): {len(sources)} ok; {total} output(s)"
    page = ws / "reports/sample_media/index.html"
    assert lines[-2] == f"report: {page}" and page.is_file()
    assert lines[-1] == f"open it in a browser: {page.as_uri()}"
    assert "processed/" not in res.stdout
