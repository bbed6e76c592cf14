"""The mount I/O contract: paths stay inside the root, reads are large and sequential, writes are final."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.errors import BadInputError, PathError, RetryableError
from pipelines.workspace.mount import Workspace, clean_relpath


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "a\0b", "./..", "x" * 1025])
def test_clean_relpath_refuses_escapes(bad: str) -> None:
    with pytest.raises(PathError):
        clean_relpath(bad)


def test_clean_relpath_normalises() -> None:
    assert clean_relpath("a//b/./c.jpg") == "a/b/c.jpg"
    assert clean_relpath("é/ü 1+2%20.jpg") == "é/ü 1+2%20.jpg"


def test_symlinked_source_outside_root_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"top secret")
    (ws / "link.jpg").symlink_to(secret)
    (ws / "dirlink").symlink_to(tmp_path)
    w = Workspace(ws)
    for rel in ("link.jpg", "dirlink/secret.jpg"):
        with pytest.raises(PathError, match="outside the workspace"):
            w.read_source(rel)


def test_symlink_inside_root_is_followed(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "a").mkdir(parents=True)
    (ws / "a" / "real.bin").write_bytes(b"x" * 10)
    (ws / "alias.bin").symlink_to(ws / "a" / "real.bin")
    assert Workspace(ws).read_source("alias.bin") == b"x" * 10


def test_output_through_symlinked_folder_out_of_root_is_refused(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (ws / "processed").symlink_to(outside)
    w = Workspace(ws)
    with pytest.raises(PathError):
        w.open_output("processed/thumbnails/a.jpg")
    assert list(outside.iterdir()) == []


def test_output_symlink_is_not_written_through(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    target = tmp_path / "victim"
    target.write_bytes(b"keep")
    (ws / "out.jpg").symlink_to(target)
    with pytest.raises(PathError):
        Workspace(ws).open_output("out.jpg")
    assert target.read_bytes() == b"keep"


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 5])
def test_read_source_returns_exact_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f.bin").write_bytes(data)
    w = Workspace(tmp_path)
    assert w.read_source("f.bin", expected_size=size) == data


def test_read_source_size_mismatch_is_retryable(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"abc")
    with pytest.raises(RetryableError):
        Workspace(tmp_path).read_source("f.bin", expected_size=4)


def test_read_source_limit(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"abcdef")
    with pytest.raises(BadInputError, match="over the limit"):
        Workspace(tmp_path).read_source("f.bin", max_bytes=5)


def test_output_written_at_final_path_with_hash(tmp_path: Path) -> None:
    import hashlib

    w = Workspace(tmp_path)
    out = w.write_file("deep/er/x.bin", b"hello")
    assert (tmp_path / "deep/er/x.bin").read_bytes() == b"hello"
    assert out.sha256 == hashlib.sha256(b"hello").hexdigest() and out.size == 5
    assert sorted(p.name for p in (tmp_path / "deep/er").iterdir()) == ["x.bin"]


def test_walk_is_sorted_and_skips_symlinked_folders(tmp_path: Path) -> None:
    for rel in ("b/2.jpg", "b/1.jpg", "a.jpg", "c/d/e.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "loop").symlink_to(tmp_path)
    assert list(Workspace(tmp_path).walk(".")) == ["a.jpg", "b/1.jpg", "b/2.jpg", "c/d/e.jpg"]


def test_overlong_segment_is_a_path_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    w = Workspace(tmp_path)
    with pytest.raises(PathError, match="too long"):
        w.stat_source("a/" + "x" * 300 + ".jpg")
    with pytest.raises(PathError, match="too long"):
        w.open_output("processed/" + "y" * 300 + "/out.jpg")


def _write_and_prune(root: str, name: str, rounds: int) -> list[str]:
    """One job's life, many times over: write a file into a shared nested folder, remove it, prune the
    folders left empty (as a failed job's clean-up does).  Returns the errors it met."""
    ws = Workspace(root)
    errors = []
    for i in range(rounds):
        rel = f"processed/_manifests/in/deep/{name}-{i}.json"
        try:
            if i % 2:
                ws.write_file(rel, b"{}")
            else:
                assert ws.create_exclusive(rel, b"lease")
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        ws.remove([rel])
        ws.prune_empty_parents(rel)
    return errors


def test_writes_survive_concurrent_clean_ups_pruning_their_folders(tmp_path: Path) -> None:
    """Concurrent jobs share output folders, and a job that fails prunes the folders it leaves empty:
    another job's folder can vanish between its mkdir and its open.  Three processes doing both at once,
    thousands of times: not one write fails (with the re-walk switched off, over a thousand do)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        runs = [pool.apply_async(_write_and_prune, (str(tmp_path), f"job{n}", 3000)) for n in range(3)]
        errors = [e for r in runs for e in r.get(timeout=300)]
    assert errors == []
    assert list(tmp_path.iterdir()) == []  # and the last clean-up left no folder behind
