"""The mount contract, seen from the kernel: strace the CLI (every process) and check the syscalls.

* >= 99 % of the bytes read from sources come from read() calls that asked for >= 1 MiB;
* no rename/renameat/renameat2 touches the workspace;
* a second run over the same sources opens none of them (they are skipped from the manifest).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, run_cli
from PIL import Image
from strace_support import MIB, OPEN, READ, RENAME, VREAD


def strace_cli(tmp: Path, *args: str, workers: bool = True) -> list[str]:
    """Run the CLI under strace -f; returns every traced line of every process.  ``workers``: the run
    must have used pool workers (else: it must have been one process, no pool)."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (Debian package strace; `make test` installs it)")
    out = tmp / "trace"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    prefix = [
        "strace",
        "-f",
        "-ff",
        "-qq",
        "-y",
        "-s",
        "0",
        "-o",
        str(out / "t"),
        "-e",
        "trace=openat,read,pread64,readv,preadv,preadv2,rename,renameat,renameat2",
    ]
    res = run_cli(*args, prefix=prefix)
    assert res.returncode == 0, res.stderr
    lines = []
    for f in sorted(out.iterdir()):
        lines += f.read_text(errors="replace").splitlines()
    if workers:
        assert len(list(out.iterdir())) > 2, "expected the worker processes to be traced too"
    else:
        assert len(list(out.iterdir())) == 1, "expected one process: no pool for up-to-date sources"
    return lines


@pytest.fixture
def sources(workspace: Path) -> dict[str, int]:
    (workspace / "in" / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "photo.jpg", workspace / "in/photo.jpg")
    shutil.copy(SAMPLES / "logo.png", workspace / "in/sub/logo.png")
    # a multi-MiB photo, so reads span several blocks and end on a partial one
    big = Image.effect_noise((2600, 1900), 64).convert("RGB")
    big.save(workspace / "in/sub/big noise.jpg", quality=93)
    return {p.relative_to(workspace).as_posix(): p.stat().st_size for p in (workspace / "in").rglob("*.*")}


def test_reads_are_1mib_and_nothing_is_renamed(
    workspace: Path, tmp_path: Path, sources: dict[str, int]
) -> None:
    assert max(sources.values()) > 3 * MIB
    lines = strace_cli(tmp_path, "run", "-w", str(workspace), "--workers", "2", "in")
    root = str(workspace)
    src_paths = {f"{root}/{rel}": size for rel, size in sources.items()}
    big_bytes = small_bytes = 0
    per_source = dict.fromkeys(src_paths, 0)
    small_calls = []
    for line in lines:
        if m := READ.match(line):
            if m["path"] in src_paths and int(m["ret"]) > 0:
                n = int(m["ret"])
                per_source[m["path"]] += n
                if int(m["count"]) >= MIB:
                    big_bytes += n
                else:
                    small_bytes += n
                    small_calls.append(line)
        elif (m := VREAD.match(line)) and m["path"] in src_paths:
            pytest.fail(f"vectored read on a source: {line}")
        elif RENAME.match(line) and root in line:
            pytest.fail(f"rename on the workspace: {line}")
    # every source was read completely, once, and >= 99 % of it by >= 1 MiB read() calls
    assert per_source == src_paths
    assert big_bytes / (big_bytes + small_bytes) >= 0.99, small_calls[:5]
    assert (workspace / "processed/_manifests/in/sub/big noise.jpg.json").is_file()

    # second run: every source is skipped from its manifest, without being opened, and without a pool
    lines = strace_cli(tmp_path, "run", "-w", str(workspace), "--workers", "2", "in", workers=False)
    opened = [m["path"] for line in lines if (m := OPEN.match(line))]
    assert not set(opened) & set(src_paths), "a skipped source was opened"
    assert any(p.endswith("photo.jpg.json") for p in opened)  # the manifest was what was read
    assert not any(RENAME.match(line) and root in line for line in lines)
