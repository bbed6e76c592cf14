"""File names users upload: a leading '-', a newline, a tab, spaces, a right-to-left override, and one
name in two unicode normalisations (NFC 'café' and NFD 'cafe' + U+0301, two different S3 keys).  Each is
processed like any other file, into outputs of its own, and no tool ever sees one as an option: under
strace, every argument that holds such a name is an absolute path or a file: URL."""

from __future__ import annotations

import ast
import json
import re
import shutil
import unicodedata
from pathlib import Path

import pytest
from avtools import facts
from conftest import SAMPLES, cli_env, json_lines, run_cli
from PIL import Image, ImageOps

NFC = unicodedata.normalize("NFC", "café HOSTILE.jpg")
NFD = unicodedata.normalize("NFD", "café HOSTILE.jpg")
NAMES = {
    "-HOSTILE -rf.jpg": "photo.jpg",
    "new\nline HOSTILE.png": "logo.png",
    "tab\tHOSTILE .jpg": "photo.jpg",
    " HOSTILE  spaced .jpg": "photo.jpg",
    "\u202eHOSTILE gpj.jpg": "logo.png",
    NFC: "photo.jpg",
    NFD: "logo.png",  # different content, so outputs mixed up between the two would show
    "-i HOSTILE.mp4": "clip.mp4",
    "new\nline HOSTILE.m4a": "tone.m4a",
    "-l HOSTILE\t.pdf": "scan.pdf",
}
EXECVE = re.compile(r'execve\("[^"]*", \[(?P<args>.*)\], ')


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, object]], str]:
    ws = tmp_path_factory.mktemp("hostile") / "ws"
    (ws / "in").mkdir(parents=True)
    for name, sample in NAMES.items():
        shutil.copy(SAMPLES / sample, ws / "in" / name)
    assert len(list((ws / "in").iterdir())) == len(NAMES)  # NFC and NFD are two files
    trace = ws.parent / "trace"
    prefix = ["strace", "-f", "-qq", "-s", "4096", "-o", str(trace), "-e", "trace=execve"]
    # ffmpeg reads the sources from the mount (no local copy), so it is given the hostile names (its
    # outputs are pipes and scratch files: they carry none)
    env = {**cli_env(), "MEDIA_WORKER_TRANSCODE__LOCAL_COPY_MAX_BYTES": "0"}
    res = run_cli("run", "-w", str(ws), "--json", "-j", "1", "in", prefix=prefix, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return ws, {r["source"]: r for r in json_lines(res.stdout)}, trace.read_text()


@pytest.mark.parametrize("name", list(NAMES), ids=[ascii(n) for n in NAMES])
def test_each_name_is_processed_into_its_own_outputs(
    run: tuple[Path, dict[str, dict[str, object]], str], name: str
) -> None:
    ws, results, _ = run
    r = results[f"in/{name}"]
    assert r["status"] == "ok", r
    doc = json.loads((ws / str(r["manifest"])).read_text(encoding="utf-8"))
    assert doc["source"]["path"] == f"in/{name}"  # byte for byte: no normalisation, no escaping
    for out in doc["outputs"]:
        path = ws / out["path"]
        assert name in out["path"] and path.stat().st_size == out["size"] > 0
        if out["media_type"].startswith("image/"):
            with Image.open(path) as im:
                im.load()
        elif out["media_type"].startswith(("video/", "audio/")) and path.suffix in (".mp4", ".m4a", ".webm"):
            assert max(facts(path).durations.values()) > 1.0


def test_nfc_and_nfd_names_keep_their_own_content(
    run: tuple[Path, dict[str, dict[str, object]], str],
) -> None:
    ws, results, _ = run
    sizes = {}
    for name in (NFC, NFD):
        doc = json.loads((ws / str(results[f"in/{name}"]["manifest"])).read_text(encoding="utf-8"))
        thumb = next(o for o in doc["outputs"] if o["variant"] == "large" and o["path"].endswith(".jpg"))
        with Image.open(ws / thumb["path"]) as im:
            sizes[name] = im.size
    for name, sample in ((NFC, "photo.jpg"), (NFD, "logo.png")):
        with Image.open(SAMPLES / sample) as im:
            w, h = ImageOps.exif_transpose(im).size  # the photo carries an EXIF rotation
        assert sizes[name][0] / sizes[name][1] == pytest.approx(w / h, rel=0.02), name


def test_no_tool_is_given_a_name_as_an_option(run: tuple[Path, dict[str, dict[str, object]], str]) -> None:
    _, _, trace = run
    seen = 0
    for line in trace.splitlines():
        m = EXECVE.search(line)
        if not m:
            continue
        for arg in ast.literal_eval(f"[{m['args']}]"):
            if "HOSTILE" in arg:
                seen += 1
                assert arg.startswith(("/", "file:/")), f"a tool got {arg!r} from: {line[:300]}"
    assert seen, "no tool was run on the hostile names (ffmpeg should have been)"
