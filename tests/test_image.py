"""The built container image, run the way Lambda runs it: read-only root, only /tmp writable, uid 1000,
``HOME=/tmp``, the Runtime Interface Emulator in front of the image's own ENTRYPOINT/CMD, and a copy of
``sample_media`` bind-mounted at /mnt/workspace.  The ready event files of ``events/`` are POSTed as
they are; every output is decoded on the host.

Run by ``make image-test`` (which builds the image first: scripts/image.sh); marked ``image`` so that
``make test`` leaves it out.  Needs podman (installed by the bootstrap's ``imagetest`` scope) and the
emulator from the aws-sam-cli wheel (scripts/sam-venv.sh).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from avtools import facts
from conftest import REPO, SAMPLES
from ocr_helpers import cer
from PIL import Image, ImageOps

pytestmark = pytest.mark.image

IMAGE = os.environ.get("IMAGE", "media-worker:dev")
PODMAN = ["podman", "--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
EVENTS = REPO / "events"
BUCKET = "media-worker-local"
ODD_KEY = "uploads/beach day+sunset.jpg"
BOXES = {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}
UID = 1000


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res


def in_image(
    *cmd: str, user: str = f"{UID}:{UID}", workspace: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command in the image with the Lambda-like restrictions (read-only root, tmpfs /tmp),
    ``workspace`` (if given) bind-mounted at /mnt/workspace."""
    volume = ["-v", f"{workspace}:/mnt/workspace"] if workspace is not None else []
    return podman(
        "run", "--rm", *ULIMITS, "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
        *volume, "--user", user, "--entrypoint", cmd[0], IMAGE, *cmd[1:], check=False,
    )  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def built_image() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make image-test` (it installs podman, buildah and runc)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} not built: run `make image-test` (scripts/image.sh build)")


@pytest.fixture(scope="module")
def rie() -> Path:
    res = subprocess.run([str(REPO / "scripts/image.sh"), "rie"], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(res.stderr)
    return Path(res.stdout.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_workspace(root: Path, owner: int = UID) -> Path:
    """A copy of sample_media (plus the photo under a key with a space and a '+'), owned by ``owner``."""
    ws = root / "ws"
    shutil.copytree(SAMPLES, ws)
    (ws / ODD_KEY).parent.mkdir(parents=True)
    shutil.copy(SAMPLES / "photo.jpg", ws / ODD_KEY)
    for p in [ws, *ws.rglob("*")]:
        os.chown(p, owner, owner)
    return ws


@dataclass
class Function:
    """The image under the emulator: POST an event, get the function's response."""

    name: str
    url: str

    def invoke(self, event: Any, timeout: float = 300) -> Any:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        req = urllib.request.Request(self.url, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")

    def invoke_file(self, name: str) -> Any:
        return self.invoke((EVENTS / name).read_bytes())

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *cmd, check=False)

    def logs(self) -> str:
        res = podman("logs", self.name, check=False)
        return res.stdout + res.stderr


@contextlib.contextmanager
def lambda_function(rie: Path, ws: Path, **env: str) -> Iterator[Function]:
    """The image's ENTRYPOINT + CMD behind the emulator, as Lambda runs it; stopped afterwards."""
    port, api_port = free_port(), free_port()
    name = f"mw-image-test-{port}"
    cfg = entry_and_cmd()
    envs = {"MEDIA_WORKER_AWS__BUCKET": BUCKET, "AWS_LAMBDA_FUNCTION_TIMEOUT": "300", **env}
    podman(
        "run", "-d", "--name", name, *ULIMITS, "--network", "host", "--read-only",
        "--tmpfs", "/tmp:rw,mode=1777", "--user", f"{UID}:{UID}",
        "-v", f"{ws}:/mnt/workspace", "-v", f"{rie}:/aws-lambda/aws-lambda-rie:ro",
        *[a for k, v in envs.items() for a in ("-e", f"{k}={v}")],
        "--entrypoint", "/aws-lambda/aws-lambda-rie", IMAGE,
        "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
        "--runtime-api-address", f"127.0.0.1:{api_port}",
        *cfg["Entrypoint"], *cfg["Cmd"],
    )  # fmt: skip
    fn = Function(name, f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the emulator did not listen on {port}: {fn.logs()[-2000:]}")
                time.sleep(0.2)
        yield fn
    finally:
        print(fn.logs()[-4000:], file=sys.stderr)
        podman("rm", "-f", "-t", "2", name, check=False)


def entry_and_cmd() -> dict[str, list[str]]:
    """The image's own ENTRYPOINT and CMD (what Lambda runs), read from the built image."""
    cfg = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout)
    return {"Entrypoint": cfg.get("Entrypoint") or [], "Cmd": cfg.get("Cmd") or []}


# -- what the image is -------------------------------------------------------------------------------


def test_image_size_and_contents() -> None:
    """Size printed; no installers, compilers or build leftovers; HOME/TMPDIR and the user as on Lambda."""
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB uncompressed")
    script = r"""
import importlib.util, json, os, shutil, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
print(json.dumps({
    "python": sys.version.split()[0], "executable": os.path.realpath(sys.executable),
    "installers": [m for m in ("pip", "setuptools", "wheel", "ensurepip") if importlib.util.find_spec(m)],
    "tools": [t for t in ("gcc", "cc", "make", "pip", "pip3") if shutil.which(t)],
    "leftovers": [n for n in os.listdir(site) if n.endswith(".egg-info") or n in ("build", "src")]
                 + [p for p in ("/src", "/var/task/build", "/root/.cache") if os.path.exists(p)],
    "home": os.environ.get("HOME"), "tmpdir": os.environ.get("TMPDIR"), "uid": os.getuid(),
    "workspace": os.environ.get("MEDIA_WORKER_WORKSPACE"),
}))
"""
    res = in_image("/opt/venv/bin/python", "-c", script)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["installers"] == [] and doc["tools"] == [] and doc["leftovers"] == [], doc
    assert doc["home"] == "/tmp" and doc["tmpdir"] == "/tmp" and doc["uid"] == UID, doc
    assert doc["workspace"] == "/mnt/workspace"
    # one interpreter: the image's python is Debian's, the same as under the tests
    assert doc["executable"] == os.path.realpath("/usr/bin/python3"), doc
    assert doc["python"] == ".".join(map(str, sys.version_info[:3]))
    cfg = entry_and_cmd()
    assert cfg == {
        "Entrypoint": ["/opt/venv/bin/python", "-m", "awslambdaric"],
        "Cmd": ["handlers.lambda_function.handler"],
    }


def test_image_runs_pinned_packages() -> None:
    """Debian packages in the image are the versions of scripts/system-packages.txt (the ones the test
    machine has, tests/test_system_packages.py), and Python packages those of requirements-dev.lock."""
    from test_system_packages import lock_versions, norm, pinned

    want = pinned("runtime")
    res = in_image("dpkg-query", "-W", "-f", "${Package} ${Version}\n", *want)
    got = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert got == want
    res = in_image(
        "/opt/venv/bin/python",
        "-c",
        "import json; from importlib import metadata as m; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    dists = json.loads(res.stdout)
    lock = lock_versions()
    found = {norm(k): v for k, v in dists.items()}
    assert found.pop("media-worker") == metadata.version("media-worker")
    drift = {k: (v, lock.get(k)) for k, v in found.items() if lock.get(k) != v}
    assert not drift, f"image packages not as locked: {drift}"
    # tesseract in the image is the one the tests measure on this machine
    host = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split()[1]
    assert in_image("tesseract", "--version").stdout.split()[1] == host


def test_read_only_root_and_demo() -> None:
    """`media-worker demo` inside the image with a read-only root, as a non-root uid: every sample ok."""
    res = in_image("media-worker", "demo", user="4242:4242")  # any uid, not only 1000
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for name in ("photo.jpg", "logo.png", "clip.mp4", "tone.m4a", "document.pdf", "scan.pdf", "page.png"):
        assert f"sample_media/{name}" in out, out
    assert "failed" not in out and "internal error" not in out, out
    res = in_image("touch", "/var/task/x")
    assert res.returncode != 0 and "Read-only file system" in res.stderr


def test_the_lambda_init_in_the_image_runs_no_program(tmp_path: Path) -> None:
    """The image was built with the tool query cache filled: its init phase (settings, engine, every
    program checked) starts no ffmpeg or tesseract.  Switched off (no cache) the same init starts them."""
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, UID, UID)
    init = (
        "import sys; started = []; "
        "sys.addaudithook(lambda e, a: started.append(a[0]) if e == 'subprocess.Popen' else None); "
        "import handlers.lambda_function; from pipelines.tools import ffmpeg; "
        "print(len(started), ffmpeg.located().path)"
    )
    for cache, want in (("", lambda n: n >= 4), (None, lambda n: n == 0)):
        env = ["-e", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9"]
        env += [] if cache is None else ["-e", f"MEDIA_WORKER_TOOL_CACHE={cache}"]
        volume = ["-v", f"{ws}:/mnt/workspace"]
        res = podman(
            "run", "--rm", *ULIMITS, "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
            *volume, *env, "--user", f"{UID}:{UID}", "--entrypoint", "/opt/venv/bin/python", IMAGE,
            "-c", init, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        started, path = res.stdout.splitlines()[-1].split()
        assert want(int(started)) and "imageio_ffmpeg" in path, (cache, res.stdout[-2000:])


def test_heic_is_decoded_in_the_image_by_a_decode_only_libheif(tmp_path: Path) -> None:
    """A rotated iPhone-style HEIC (made here with pillow-heif's encoder) becomes upright thumbnails
    inside the image; the image's libheif has no encoder (no x265) and pillow-heif is not in it."""
    from test_heic import heic, patched

    ws = tmp_path / "ws"
    (ws / "DCIM").mkdir(parents=True)
    (ws / "DCIM/IMG 0001.HEIC").write_bytes(heic(patched(), exif_orientation=6))
    for p in [ws, *ws.rglob("*")]:
        os.chown(p, UID, UID)
    res = in_image("media-worker", "run", "-w", "/mnt/workspace", "--json", "DCIM", workspace=ws)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (r,) = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert r["status"] == "ok", r
    check_thumbnails(ws, "DCIM/IMG 0001.HEIC", (400, 600))  # portrait: the rotation applied once
    script = (
        "import importlib.util, json, pi_heif; info = pi_heif.libheif_info(); "
        "print(json.dumps({'encoders': info.get('encoders'), 'HEIF': info.get('HEIF'), "
        "'pillow_heif': importlib.util.find_spec('pillow_heif') is not None}))"
    )
    doc = json.loads(in_image("/opt/venv/bin/python", "-c", script).stdout)
    assert "x265" not in doc["encoders"] and not doc["HEIF"] and doc["pillow_heif"] is False, doc


# -- the Lambda flow under the emulator ---------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(rie: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Function, Path]]:
    ws = sample_workspace(tmp_path_factory.mktemp("image"))
    with lambda_function(rie, ws) as fn:
        yield fn, ws


def event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def check_thumbnails(ws: Path, rel: str, displayed: tuple[int, int]) -> None:
    """Every size x format decodes, fits its box, keeps the displayed aspect; written by uid 1000."""
    for size, (bw, bh) in BOXES.items():
        for ext, fmt in (("jpg", "JPEG"), ("webp", "WEBP")):
            path = ws / f"processed/thumbnails/{size}/{rel}.{ext}"
            assert path.stat().st_uid == UID
            with Image.open(path) as im:
                im.load()
                assert im.format == fmt
                w, h = im.size
                assert w <= bw and h <= bh and (w == min(bw, displayed[0]) or h == min(bh, displayed[1]))
                assert abs(w / h - displayed[0] / displayed[1]) < 0.02, (rel, size, im.size)


def check_manifest(ws: Path, rel: str, **source: Any) -> dict[str, Any]:
    """The manifest lists each output with its real size and sha256; source identity as the event said."""
    doc = json.loads((ws / f"processed/_manifests/{rel}.json").read_text())
    assert doc["status"] == "ok" and doc["source"]["path"] == rel
    for k, v in source.items():
        assert doc["source"][k] == v, (k, doc["source"])
    for out in doc["outputs"]:
        data = (ws / out["path"]).read_bytes()
        assert len(data) == out["size"] and hashlib.sha256(data).hexdigest() == out["sha256"]
    return doc


def displayed_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).size


def test_s3_put_photo(deployed: tuple[Function, Path]) -> None:
    fn, ws = deployed
    resp = fn.invoke_file("s3-put-photo.json")
    assert resp == {"counts": {"ok": 1}, "failures": []}, resp
    disp = displayed_size(SAMPLES / "photo.jpg")
    with Image.open(SAMPLES / "photo.jpg") as im:
        assert im.size == disp[::-1]  # the sample is stored rotated (EXIF orientation 6)
    check_thumbnails(ws, "photo.jpg", disp)
    rec = event("s3-put-photo.json")["Records"][0]["s3"]["object"]
    check_manifest(ws, "photo.jpg", version_id=rec["versionId"], etag=rec["eTag"], size=rec["size"])


def test_s3_put_key_with_plus_and_space(deployed: tuple[Function, Path]) -> None:
    fn, ws = deployed
    assert (
        event("s3-put-odd-key.json")["Records"][0]["s3"]["object"]["key"] == "uploads/beach+day%2Bsunset.jpg"
    )
    resp = fn.invoke_file("s3-put-odd-key.json")
    assert resp == {"counts": {"ok": 1}, "failures": []}, resp
    check_thumbnails(ws, ODD_KEY, displayed_size(SAMPLES / "photo.jpg"))
    check_manifest(ws, ODD_KEY)


def test_sqs_batch_with_a_malformed_record(deployed: tuple[Function, Path]) -> None:
    fn, ws = deployed
    records = event("sqs-batch-one-malformed.json")["Records"]
    resp = fn.invoke_file("sqs-batch-one-malformed.json")
    assert resp == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}, resp
    with Image.open(SAMPLES / "logo.png") as im:
        size = im.size
        assert im.mode == "RGBA"
    check_thumbnails(ws, "logo.png", size)
    with Image.open(ws / "processed/thumbnails/thumb/logo.png.webp") as im:
        assert im.mode == "RGBA" and im.getextrema()[3][0] < 255  # transparency kept
    check_manifest(ws, "logo.png")


def test_eventbridge_object_created_ocr(deployed: tuple[Function, Path]) -> None:
    """scan.pdf: thumbnails of page 1 and OCR by the image's own tesseract."""
    fn, ws = deployed
    resp = fn.invoke_file("eventbridge-object-created.json")
    assert resp == {"counts": {"ok": 1}, "failures": []}, resp
    doc = check_manifest(
        ws, "scan.pdf", version_id=event("eventbridge-object-created.json")["detail"]["object"]["version-id"]
    )
    texts = [o["path"] for o in doc["outputs"] if o["pipeline"] == "ocr" and o["path"].endswith(".txt")]
    (txt,) = texts
    rate = cer((ws / txt).read_text(), (SAMPLES / "scan.txt").read_text())
    assert rate < 0.02, rate
    assert "tesseract" in json.dumps(doc["tools"])


def test_distributed_map_batch(deployed: tuple[Function, Path]) -> None:
    fn, ws = deployed
    resp = fn.invoke_file("distributed-map-batch.json")
    assert resp["counts"] == {"ok": 2}, resp
    doc = check_manifest(ws, "clip.mp4")
    src = facts(SAMPLES / "clip.mp4")
    renditions = [o for o in doc["outputs"] if o["pipeline"] == "transcode" and o["path"].endswith(".mp4")]
    assert renditions
    for out in renditions:
        f = facts(ws / out["path"])
        assert f.video and f.video["codec"] == "h264" and f.audio and f.audio["codec"] == "aac"
        assert abs(f.durations["video"] - src.durations["video"]) < 0.1
    posters = [
        o for o in doc["outputs"] if o["pipeline"] == "video_thumbnails" and o["path"].endswith(".jpg")
    ]
    assert posters
    for out in posters:
        with Image.open(ws / out["path"]) as im:
            im.load()
    doc = check_manifest(ws, "tone.m4a")
    for out in doc["outputs"]:
        f = facts(ws / out["path"])
        assert f.audio and abs(f.durations["audio"] - facts(SAMPLES / "tone.m4a").durations["audio"]) < 0.1


def test_prefix_batch_finishes_the_rest(deployed: tuple[Function, Path]) -> None:
    fn, ws = deployed
    earlier = {m: m.stat().st_mtime_ns for m in (ws / "processed/_manifests").rglob("*.json")}
    resp = fn.invoke_file("prefix-batch.json")
    assert resp["done"] is True and resp["failures"] == [], resp
    # page.png and document.pdf were left; the 6 sources done before are skipped through their manifests
    assert resp["counts"]["ok"] == 2 and set(resp["counts"]) == {"ok", "skipped"}, resp
    assert len(earlier) == 6 and all(m.stat().st_mtime_ns == t for m, t in earlier.items())
    for rel in ("page.png", "document.pdf"):
        check_manifest(ws, rel)
    check_thumbnails(ws, "page.png", Image.open(SAMPLES / "page.png").size)


def decode(path: Path) -> str:
    """Open an output the way its reader would; returns what it is (fails on anything undecodable)."""
    ext = path.suffix.lower()
    if ext in (".jpg", ".webp", ".png"):
        with Image.open(path) as im:
            im.load()
            return f"{im.format} {im.size[0]}x{im.size[1]}"
    if ext in (".mp4", ".m4a", ".webm", ".mp3", ".m4s"):
        f = facts(path)
        assert f.video or f.audio, path
        return f"{f.format} {max(f.durations.values()):.2f}s"
    if ext == ".pdf":
        from pypdf import PdfReader

        return f"PDF {len(PdfReader(path).pages)} pages"
    text = path.read_text(encoding="utf-8")
    if ext == ".json":
        json.loads(text)
    elif ext == ".vtt":
        assert text.startswith("WEBVTT"), path
    elif ext == ".m3u8":
        assert text.startswith("#EXTM3U"), path
    else:
        assert ext == ".txt", f"unexpected output type {path}"
    return f"{ext[1:]} {len(text)} chars"


def test_every_output_decodes(deployed: tuple[Function, Path]) -> None:
    """Every output every manifest lists opens as what it claims to be."""
    _fn, ws = deployed
    manifests = sorted((ws / "processed/_manifests").rglob("*.json"))
    assert len(manifests) == 8  # the 7 samples and the upload with the odd key
    seen = 0
    for m in manifests:
        for out in json.loads(m.read_text())["outputs"]:
            decode(ws / out["path"])
            seen += 1
    print(f"\n{seen} outputs of {len(manifests)} sources decoded")


def test_nothing_written_outside_tmp_and_workspace(deployed: tuple[Function, Path]) -> None:
    """After every invocation: /tmp holds no bytecode, caches or scratch; the root stays read-only."""
    fn, ws = deployed
    left = fn.exec("find", "/tmp", "-mindepth", "1").stdout.split()
    assert left == [], left
    assert fn.exec("touch", "/opt/venv/x").returncode != 0
    logs = fn.logs()
    assert "Traceback" not in logs and "internal error" not in logs, logs[-3000:]
    # every file in the workspace is a sample, an upload or an output/manifest of the layout
    for p in ws.rglob("*"):
        if p.is_file():
            rel = p.relative_to(ws).as_posix()
            assert rel.startswith("processed/") or (SAMPLES / rel).exists() or rel == ODD_KEY, rel


def test_unwritable_workspace_is_one_configuration_error(rie: Path, tmp_path: Path) -> None:
    """A workspace the function's uid does not own: one clear error per invocation naming the path, the
    uid and the fix; on SQS the invocation fails as a whole (every message returns to the queue) instead
    of each record being reported as a failed item and drained into the dead-letter queue."""
    ws = sample_workspace(tmp_path, owner=0)
    os.chmod(ws, 0o755)
    with lambda_function(rie, ws) as fn:
        for name in ("s3-put-photo.json", "sqs-batch-one-malformed.json", "prefix-batch.json"):
            resp = fn.invoke_file(name)
            assert resp["errorType"] == "WorkspaceNotWritableError", (name, resp)
            msg = resp["errorMessage"]
            assert "/mnt/workspace" in msg and "uid 1000" in msg and "owned by 0:0" in msg, msg
            assert "PosixUser" in msg, msg
        logs = fn.logs()
    assert not list((ws / "processed").glob("*")) if (ws / "processed").exists() else True
    errors = [line for line in logs.splitlines() if "configuration error" in line]
    assert len(errors) == 3, logs[-3000:]  # one line per invocation, none per file
    assert "internal error" not in logs


def test_upload_trigger_runs_the_image_on_the_mounted_bucket(tmp_path: Path) -> None:
    """The whole Lambda flow on one machine: an S3 PUT to the local stack's S3 API, the upload trigger,
    the built image under the Runtime Interface Emulator (as uid 1000, read-only root) with the FUSE
    mount of the same bucket at /mnt/workspace, outputs read back through S3 GET and decoded."""
    from stack_support import check_output, local_stack

    keys = {
        "uploads/photo.jpg": "photo.jpg",
        ODD_KEY: "photo.jpg",
        "uploads/clip.mp4": "clip.mp4",
        "uploads/scan.pdf": "scan.pdf",
    }
    with local_stack(tmp_path / "st", "--image", IMAGE) as stack:
        assert stack.status["parts"]["function"] and stack.status["function"] == IMAGE
        for key, name in keys.items():
            stack.s3.upload_file(str(SAMPLES / name), stack.bucket, key)
        for key, name in keys.items():
            m = stack.wait_manifest(key)
            assert m["status"] == "ok" and m["source"]["size"] == (SAMPLES / name).stat().st_size, m
            for out in m["outputs"]:
                check_output(stack.get(out["path"]), out)
        scan = stack.manifest("uploads/scan.pdf")
        assert scan is not None
        text = next(o for o in scan["outputs"] if o["path"].endswith(".txt"))
        assert cer(stack.get(text["path"]).decode(), (SAMPLES / "scan.txt").read_text()) < 0.05
        # it was the image that did the work: its handler logged each job; the in-process path did not run
        log = (stack.dir / "logs" / "function.log").read_text()
        assert all(f'"source_key":"{key}"' in log for key in keys), log[-2000:]
        assert '"processed:' not in (stack.dir / "logs" / "trigger.log").read_text()


def test_the_pool_sizes_itself_from_the_containers_cpu_quota() -> None:
    """`--cpus 1` on a 2-core host: the cgroup's cpu.max, not os.cpu_count(), sizes the process pool."""
    probe = (
        "import os; from pipelines.tools.host import available_cpus; print(os.cpu_count(), available_cpus())"
    )
    for cpus, want in (("1", 1), ("1.5", 2)):
        res = podman(
            "run", "--rm", *ULIMITS, "--network", "none", "--read-only", f"--cpus={cpus}",
            "--entrypoint", "/opt/venv/bin/python", IMAGE, "-c", probe, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        host, got = map(int, res.stdout.split())
        assert got == min(want, host), (cpus, res.stdout)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("a 1-CPU host cannot show the quota capping the pool")
