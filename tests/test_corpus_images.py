"""Every real-world image of the shared corpus through the CLI: valid outputs or a clean per-file failure."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import json_lines, run_cli
from PIL import Image


def test_corpus_images_through_cli(corpus: Path, workspace: Path) -> None:
    images = sorted((corpus / "images").iterdir())
    (workspace / "corpus").mkdir()
    for p in images:
        shutil.copy(p, workspace / "corpus" / p.name)
    res = run_cli("run", "-w", str(workspace), "--json", "--workers", "2", "corpus")
    assert res.returncode in (0, 1), res.stderr  # 1: some hostile files fail, as they should
    results = {r["source"]: r for r in json_lines(res.stdout)}
    assert set(results) == {f"corpus/{p.name}" for p in images}, "every file gets exactly one result"
    failed = {k: r for k, r in results.items() if r["status"] == "failed"}
    for r in failed.values():
        assert r["error_kind"] == "bad_input", r  # never an internal error or a crash
        assert r["outputs"] == [] and r["manifest"] is None
    # files that are broken or hostile on purpose must fail; well-formed ones must not
    for name in (
        "decompression_bomb.gif",
        "decompression_bomb.ico",
        "reallybig.bmp",
        "truncated_image.png",
        "crash-86214e58da443d2b80820cff9677a38a33dcbbca.tif",
        "oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif",
    ):
        assert f"corpus/{name}" in failed, name
    for name in (
        "hopper.jpg",
        "pil_sample_cmyk.jpg",
        "icc_profile_big.jpg",
        "iss634.webp",
        "multipage.tiff",
        "mode_16bit.png",
        "tiff_16bit_RGB.tiff",
        "hopper_orientation_6.webp",
        "sugarshack.mpo",
    ):
        assert results[f"corpus/{name}"]["status"] == "ok", results[f"corpus/{name}"]
    for r in results.values():
        if r["status"] != "ok":
            continue
        assert len(r["outputs"]) == 6
        for out in r["outputs"]:
            with Image.open(workspace / out) as im:
                im.load()
                assert im.format in ("JPEG", "WEBP") and im.mode in ("RGB", "RGBA", "L")
                assert max(im.size) <= 1920 and min(im.size) >= 1
    assert not [
        p for p in (workspace / "processed").rglob("*") if p.is_file() and "corpus" not in p.as_posix()
    ]
