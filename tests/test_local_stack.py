"""The upload-triggered flow on one machine: SeaweedFS's S3 API, a FUSE mount of the same bucket as the
workspace, and the local trigger calling the handler (``media-worker stack``, ``make e2e``).

No mocks: objects go in through boto3, the worker reads them from the mount, outputs come back through
S3 GET and are decoded.  Where FUSE is unavailable the tests skip with the reason (in CI they fail).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from conftest import REPO, SAMPLES, cli_env
from PIL import Image
from stack_support import (
    LocalStack,
    assert_nothing_left,
    check_output,
    down_and_check,
    fuse_or_skip,
    leftovers,
    local_stack,
    mounted,
    processes_of,
    stack_cli,
    stack_up_process,
)

from handlers import events
from handlers.local.trigger import Change, change_from_filer, s3_notification

UPLOADS = "uploads/"
ODD_KEY = "uploads/beach day+sunset.jpg"
BIG_KEY = "uploads/big noise.png"
VERSIONED = "uploads/versioned.jpg"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix not in (".py", ".md", ".txt"))
OCR_TRUTH = {"scan.pdf": "scan.txt", "document.pdf": "document.txt"}  # default rules: OCR for PDFs


@pytest.fixture(scope="module", autouse=True)
def no_stack_left_by_the_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Last of all (after the shared stack's own teardown): no weed, trigger or mount of any test's stack."""
    yield
    left = leftovers(tmp_path_factory.getbasetemp())
    assert not left, f"left running or mounted by the stack tests: {left}"


@pytest.fixture(autouse=True)
def no_stack_left_by_the_test(tmp_path: Path) -> Iterator[None]:
    """After each test, passed or failed: nothing of a stack under its tmp_path still runs or is mounted
    (what is, is stopped here, and the test errors naming it)."""
    yield
    left = leftovers(tmp_path)
    if left:
        for state in tmp_path.glob("*/state.json"):
            stack_cli("down", "--dir", str(state.parent))
        pytest.fail(f"the test left its stack running or mounted: {left}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with local_stack(tmp_path_factory.mktemp("stack") / "st") as s:
        yield s


def noise_png(path: Path, size: tuple[int, int] = (1700, 1250)) -> Path:
    """A PNG of random pixels: incompressible, so > 5 MiB (a multipart upload)."""
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, compress_level=1)
    return path


def retried_for_sync(entry: dict) -> bool:
    """A delivery that failed only because the mount did not show the event's object yet."""
    err = entry.get("error", "")
    return not entry["ok"] and "RetryLater" in err and ("has not synced" in err)


# -- the whole flow -----------------------------------------------------------------------------------


def test_uploads_are_processed_from_the_mount_and_read_back_through_s3(
    stack: LocalStack, tmp_path: Path
) -> None:
    s3, bucket = stack.s3, stack.bucket
    uploaded: dict[str, int] = {}
    for p in SAMPLE_FILES:
        s3.upload_file(str(p), bucket, UPLOADS + p.name)
        uploaded[UPLOADS + p.name] = p.stat().st_size
    s3.upload_file(str(SAMPLES / "photo.jpg"), bucket, ODD_KEY)
    uploaded[ODD_KEY] = (SAMPLES / "photo.jpg").stat().st_size
    big = noise_png(tmp_path / "big.png")
    assert big.stat().st_size > 5 * 2**20
    s3.upload_file(
        str(big),
        bucket,
        BIG_KEY,
        Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20),
    )
    uploaded[BIG_KEY] = big.stat().st_size
    assert s3.head_object(Bucket=bucket, Key=BIG_KEY)["ETag"].endswith('-2"')  # really multipart

    # every upload gets a manifest (bounded wait), and every output it names decodes as what it says
    checked: dict[str, list[str]] = {}
    for key, size in uploaded.items():
        m = stack.wait_manifest(key)
        assert m["status"] == "ok", (key, m)
        assert m["source"]["path"] == key and m["source"]["size"] == size
        assert m["outputs"], key
        checked[key] = [check_output(stack.get(o["path"]), o) for o in m["outputs"]]
    print(json.dumps(checked, indent=1))

    # what each kind of source became
    kinds = {k: " ".join(v) for k, v in checked.items()}
    assert kinds[UPLOADS + "clip.mp4"].count("video/mp4 75 frames") == 2  # the test config's two rungs, 3 s
    assert "WebVTT" in kinds[UPLOADS + "clip.mp4"]  # the storyboard
    assert "audio/mp4" in kinds[UPLOADS + "tone.m4a"]
    assert "image JPEG" in kinds[ODD_KEY] and "image WEBP" in kinds[ODD_KEY]
    big_manifest = stack.manifest(BIG_KEY)
    assert big_manifest is not None
    large = next(
        o for o in big_manifest["outputs"] if o["variant"] == "large" and o["media_type"] == "image/jpeg"
    )
    assert (large["meta"]["width"], large["meta"]["height"]) == (1469, 1080)  # 1700x1250 fitted in 1920x1080
    # OCR text read back through S3 matches the ground truth
    from rapidfuzz import fuzz

    for name, truth in OCR_TRUTH.items():
        m = stack.manifest(UPLOADS + name)
        assert m is not None
        text_out = next(o for o in m["outputs"] if o["path"].endswith(".txt"))
        got = stack.get(text_out["path"]).decode()
        assert fuzz.ratio(got.strip(), (SAMPLES / truth).read_text().strip()) > 90, (name, got[:300])

    # the odd key's outputs sit under its decoded name, byte for byte
    odd = stack.manifest(ODD_KEY)
    assert odd is not None and all("beach day+sunset.jpg" in o["path"] for o in odd["outputs"])

    # one event per upload (multipart: one, at completion), ending ok; the worker's own writes through
    # the mount (outputs, manifests) never triggered it
    journal = [e for e in stack.journal() if e["origin"] == "filer"]
    by_key: dict[str, list[dict]] = {}
    for e in journal:
        by_key.setdefault(e["key"], []).append(e)
    for key in uploaded:
        assert [e["attempt"] for e in by_key[key]].count(1) == 1 and by_key[key][-1]["ok"], (key, by_key[key])
        assert all(retried_for_sync(e) for e in by_key[key][:-1]), by_key[key]
    assert by_key[BIG_KEY][0]["event"] == "ObjectCreated:CompleteMultipartUpload"
    assert by_key[ODD_KEY][0]["event"] == "ObjectCreated:Put"
    assert not [k for k in by_key if k.startswith("processed/")]
    status = json.loads(stack_cli("status", "--dir", str(stack.dir), "--json").stdout)
    assert status["trigger"]["filtered"] > 0  # the outputs' events were seen and dropped


def test_a_second_version_is_processed_again_and_its_manifest_names_it(stack: LocalStack) -> None:
    s3, bucket = stack.s3, stack.bucket
    s3.upload_file(str(SAMPLES / "photo.jpg"), bucket, VERSIONED)
    first = stack.wait_manifest(VERSIONED)
    v1_size = (SAMPLES / "photo.jpg").stat().st_size
    assert first["source"]["size"] == v1_size
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (20, 160, 60)).save(buf, "JPEG", quality=90)
    v2 = buf.getvalue()
    assert len(v2) != v1_size
    s3.put_object(Bucket=bucket, Key=VERSIONED, Body=v2)
    second = stack.wait_manifest(VERSIONED, lambda m: m["source"]["size"] == len(v2))
    assert second["status"] == "ok"
    large = next(o for o in second["outputs"] if o["variant"] == "large" and o["media_type"] == "image/jpeg")
    data = stack.get(large["path"])
    check_output(data, large)
    with Image.open(io.BytesIO(data)) as im:  # the green 640x480 picture, not the first version's photo
        assert im.size == (640, 480)
        r, g, b = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
        assert g > 120 and r < 60 and b < 100, (r, g, b)
    # two events, both ending ok; the mount may still show the first version when the second's event
    # arrives (as S3 Files may): that delivery fails retryably and its redelivery processes version 2
    deliveries = [e for e in stack.journal() if e["key"] == VERSIONED and e["origin"] == "filer"]
    assert [e["attempt"] for e in deliveries].count(1) == 2, json.dumps(deliveries)
    assert deliveries[-1]["ok"] and all(e["ok"] or retried_for_sync(e) for e in deliveries), json.dumps(
        deliveries
    )


# -- redelivery and the dead-letter file --------------------------------------------------------------


def _event_for(stack: LocalStack, key: str, size: int) -> dict:
    return s3_notification(Change(key, size, None, False, time.time_ns()), stack.bucket)


def _send(stack: LocalStack, tmp_path: Path, event: dict) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    res = stack_cli("send", str(path), "--dir", str(stack.dir))
    assert res.returncode == 0, res.stderr


def test_an_event_before_its_object_is_visible_is_redelivered_then_succeeds(
    stack: LocalStack, tmp_path: Path
) -> None:
    key = "late/photo.jpg"
    body = (SAMPLES / "photo.jpg").read_bytes()
    _send(stack, tmp_path, _event_for(stack, key, len(body)))  # S3's event, before the mount has the object

    def inbox() -> list[dict]:
        return [e for e in stack.journal() if e["key"] == key and e["origin"] == "inbox"]

    first = stack.wait("the first delivery", lambda: inbox())[0]
    assert not first["ok"] and "RetryLater" in first["error"] and "not on the mount" in first["error"]
    assert first["retry_in_seconds"] == 0.5
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    done = stack.wait("a successful redelivery", lambda: [e for e in inbox() if e["ok"]])[0]
    assert done["attempt"] >= 2
    m = stack.wait_manifest(key)
    assert m["status"] == "ok" and m["source"]["size"] == len(body)
    assert not [d for d in stack.dead_letters() if d["key"] == key]


def test_an_event_that_keeps_failing_is_dead_lettered_with_its_reason(
    stack: LocalStack, tmp_path: Path
) -> None:
    key = "never/there.jpg"
    event = _event_for(stack, key, 1234)
    _send(stack, tmp_path, event)
    dead = stack.wait(
        "the dead-letter line", lambda: [d for d in stack.dead_letters() if d["key"] == key], 60
    )[0]
    assert dead["attempts"] == 4  # stack.max_receives in the test config
    assert "not on the mount" in dead["reason"]
    assert dead["event"] == event
    tries = [e for e in stack.journal() if e["key"] == key]
    assert [e["attempt"] for e in tries] == [1, 2, 3, 4]
    assert [e.get("retry_in_seconds") for e in tries] == [0.5, 1.0, 2.0, None]  # doubling, as configured
    assert tries[-1]["dead_lettered"] is True


# -- what a client gets from `stack status` ------------------------------------------------------------


def test_status_names_everything_an_s3_client_needs(stack: LocalStack) -> None:
    import botocore.exceptions

    st = stack.status
    assert st["running"] and st["parts"] == {"server": True, "mount": True, "trigger": True}
    assert st["endpoint_url"].startswith("http://127.0.0.1:") and st["input_prefix"] == ""
    assert mounted(Path(st["mount"]))
    env = stack_cli("env", "--dir", str(stack.dir))
    assert f"export AWS_ACCESS_KEY_ID={st['access_key_id']}" in env.stdout
    # the credentials are real: an unsigned request is refused
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    anon = boto3.client(
        "s3",
        endpoint_url=st["endpoint_url"],
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED),
    )
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        anon.list_objects_v2(Bucket=stack.bucket)
    # a second `up` on a running stack reports it instead of starting another
    again = stack_cli("up", "--dir", str(stack.dir), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["endpoint_url"] == st["endpoint_url"]


# -- start and stop: nothing left behind --------------------------------------------------------------


LATE_VOLUME_WEED = r"""#!/bin/bash
# The real weed, except that `weed server` runs without its volume server, which starts (on the ports the
# stack chose) only once the S3 API has failed two writes for want of one (each after 30 s of retries:
# a client's retry does not outlast it), as on a loaded machine; or never: the test says which.
real=REAL
[ "$1" = server ] || exec "$real" "$@"
log=$(readlink /proc/$$/fd/1)
for a in "$@"; do
  case $a in
    -dir=*) dir=${a#*=} ;;
    -master.port=*) mport=${a#*=} ;;
    -master.port.grpc=*) mgrpc=${a#*=} ;;
    -volume.port=*) vport=${a#*=} ;;
    -volume.port.grpc=*) vgrpc=${a#*=} ;;
  esac
done
"$real" "$@" -volume=false &
[ NEVER = 1 ] && wait
until [ "$(grep -c "FAILED_PUT" "$log")" -ge 2 ]; do sleep 0.2; done
mkdir -p "$dir/late-volume"
exec "$real" volume -master="127.0.0.1:$mport.$mgrpc" -port="$vport" -port.grpc="$vgrpc" \
  -dir="$dir/late-volume" -ip=127.0.0.1 -ip.bind=127.0.0.1
"""
REFUSED = "failed to pick 1 from  0 node candidates"  # the master's log when no volume server can take it
FAILED_PUT = "putToFiler: chunked upload failed"  # the S3 API's, when it gives up on a write


def late_volume_path(folder: Path, *, never: bool = False) -> str:
    """A PATH whose `weed` is :data:`LATE_VOLUME_WEED` around the real one."""
    from handlers.local.stack import find_weed

    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    script = LATE_VOLUME_WEED.replace("REAL", shlex.quote(find_weed())).replace("NEVER", str(int(never)))
    script = script.replace("FAILED_PUT", FAILED_PUT)
    (bin_dir / "weed").write_text(script)
    (bin_dir / "weed").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_up_waits_until_a_volume_server_stores_a_write(tmp_path: Path) -> None:
    """The S3 API answers before a volume server has registered with the master, and refuses every write
    until then: `up` waits for a write to be stored, instead of failing on its probe."""
    fuse_or_skip()
    folder = tmp_path / "st"
    try:
        env = cli_env(PATH=late_volume_path(tmp_path))
        res = stack_cli("up", "--dir", str(folder), "--json", env=env, timeout=400)
        log = (folder / "logs/server.log").read_text(errors="replace")
        assert REFUSED in log and log.count(FAILED_PUT) >= 2  # writes were refused at first
        assert res.returncode == 0, res.stderr[-3000:]
        assert json.loads(res.stdout)["running"]
    finally:
        down_and_check(folder)


def test_up_gives_up_on_a_server_that_never_stores_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded: no volume server ever registers; `up` fails saying what it waited for and the last
    refusal, and stops the server."""
    from config.errors import StackError
    from config.settings import load_settings
    from handlers.local import stack as local_stack

    fuse_or_skip()
    folder = tmp_path / "st"
    monkeypatch.setenv("PATH", late_volume_path(tmp_path, never=True))
    monkeypatch.setattr(local_stack, "WRITE_READY_SECONDS", 1.0)  # one write's 30 s
    stack = local_stack.Stack(folder, load_settings(None, workspace=tmp_path))
    try:
        with pytest.raises(StackError) as exc:
            stack.up()
        msg = str(exc.value)
        assert msg.startswith("a volume server to store an S3 PUT: not ready after 1 s: last: "), msg
        assert "InternalError" in msg, msg
        assert REFUSED in (folder / "logs/server.log").read_text(errors="replace")
        assert_nothing_left(folder)  # `up` itself stopped the server
    finally:
        down_and_check(folder)


def test_a_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    """The mount cannot start (/dev/fuse hidden in a private mount namespace): `up` fails naming the
    mount, and the server it had started is stopped."""
    fuse_or_skip()
    folder = tmp_path / "st"
    script = (
        "mount --make-rprivate / && mount --bind /dev/null /dev/fuse && "
        f"exec {sys.executable} -m handlers.cli stack up --dir {folder}"
    )
    try:
        res = subprocess.run(
            ["unshare", "--mount", "sh", "-c", script],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=cli_env(),
            timeout=180,
        )
        assert res.returncode == 1, res.stderr
        assert "mount" in res.stderr
        assert (folder / "logs" / "server.log").exists()  # the server had started
        assert_nothing_left(folder)  # `up` itself stopped it
    finally:
        down_and_check(folder)


def test_down_stops_a_stack_whose_mount_died_without_unmounting(tmp_path: Path) -> None:
    """`weed mount` SIGKILLed (its grace is short; on a loaded machine it had not unmounted yet): every
    stat of the mount point fails with ENOTCONN (or ECONNABORTED); `down` still stops the server and
    unmounts."""
    folder = tmp_path / "st"
    with local_stack(folder) as stack:
        mount = json.loads((folder / "state.json").read_text())["procs"]["mount"]["pid"]
        os.kill(mount, signal.SIGKILL)

        def dead() -> bool:
            """Listing it fails at once; a stat (what `down` tripped on) once its cached attributes expire."""
            for probe in (os.listdir, os.stat):
                try:
                    probe(folder / "workspace")
                    return False
                except OSError as exc:
                    if exc.errno not in (errno.ENOTCONN, errno.ECONNABORTED):
                        raise
            return True

        stack.wait("the mount point to fail with ENOTCONN", dead, timeout=180)
        assert mounted(folder / "workspace")
    # local_stack's `stack down --purge`: nothing running or mounted


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """Python's own SIGINT handler for the test, whatever the run inherited (SIG_IGN in a background job)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_python_swallows_still_stops_up(tmp_path: Path, sigint_raises: None) -> None:
    """A SIGINT whose KeyboardInterrupt lands in a callback (CI: an import lock's clean-up) is printed as
    "Exception ignored" and lost to the code; during `up` it is remembered, and the next wait raises it."""
    from config.settings import load_settings
    from handlers.local.stack import Stack, _remembered_sigint

    stack = Stack(tmp_path / "st", load_settings(None, workspace=tmp_path))
    with _remembered_sigint() as seen:
        stack._interrupts = seen
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)
        except KeyboardInterrupt:
            pass  # what Python does with it in a callback: print it and go on
        with pytest.raises(KeyboardInterrupt):
            stack._wait("nothing", lambda: False, {"procs": {}}, "server")
    assert seen == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back (the fixture's)


def test_an_ignored_sigint_stays_ignored_during_up() -> None:
    """Started with SIGINT ignored (a shell's background job), `up` does not take Ctrl-C back."""
    from handlers.local.stack import _remembered_sigint

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _remembered_sigint() as seen:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
        assert seen == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_up_stops_what_was_started(tmp_path: Path) -> None:
    folder = tmp_path / "st"
    with stack_up_process(folder) as proc:
        state = folder / "state.json"
        end = time.monotonic() + 60
        while time.monotonic() < end and not (state.exists() and '"server"' in state.read_text()):
            time.sleep(0.02)
        assert processes_of(folder), "the server did not start"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
        assert "stopped" in stderr
        assert_nothing_left(folder)


def test_attached_stack_stops_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "st"
    with stack_up_process(folder, "--attach") as proc:
        assert proc.stderr is not None
        end = time.monotonic() + 120
        while time.monotonic() < end and "attached" not in (proc.stderr.readline() or ""):
            pass
        assert len(processes_of(folder)) >= 4  # server, mount, trigger and its filer tail
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "stack stopped" in stderr, stderr
        assert_nothing_left(folder)


# -- the event shape (no stack needed) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["a b+c.jpg", "dir/ünïcödé 100%.png", "x/y/z (1)&=?#.mov", "plus+only", "~tilde*star'.pdf"]
)
def test_keys_are_encoded_as_s3_does_and_decoded_back_by_the_handler(key: str) -> None:
    event = s3_notification(Change(key, 10, "abc", False, time.time_ns()), "media")
    raw = event["Records"][0]["s3"]["object"]["key"]
    assert " " not in raw and ("+" not in key or "%2B" in raw)
    (ref,) = events.s3_notification(event)
    assert ref.key == key and ref.size == 10 and ref.bucket == "media"
    assert events.shape(event) == "s3"


def test_filer_events_that_are_not_object_creates_are_dropped() -> None:
    entry = {"name": "f.jpg", "isDirectory": False, "attributes": {"fileSize": "7"}}
    create = {"directory": "/buckets/media/in", "eventNotification": {"newEntry": entry}, "tsNs": "5"}
    assert change_from_filer(create, "media") == Change("in/f.jpg", 7, None, False, 5)
    folder = {
        "directory": "/buckets/media",
        "eventNotification": {"newEntry": {**entry, "isDirectory": True}},
    }
    delete = {"directory": "/buckets/media/in", "eventNotification": {"oldEntry": entry}}
    part = {"directory": "/buckets/media/.uploads/abc", "eventNotification": {"newEntry": entry}}
    other = {"directory": "/buckets/other/in", "eventNotification": {"newEntry": entry}}
    assert [change_from_filer(d, "media") for d in (folder, delete, part, other)] == [None] * 4


def test_stack_up_without_fuse_device_is_reported(tmp_path: Path) -> None:
    """Where there is no stack yet, `status` says so and exits 1 (scripts can test it)."""
    res = stack_cli("status", "--dir", str(tmp_path / "none"), "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["running"] is False


def test_only_uploads_under_the_input_prefix_trigger_the_worker(tmp_path: Path) -> None:
    """The stack's own settings (here given in code, not a file) reach its trigger."""
    from stack_support import boto3_client

    from config.settings import load_settings
    from handlers.local.stack import Stack

    fuse_or_skip()
    stack = Stack(tmp_path / "st", load_settings(None, stack={"input_prefix": "in/"}))
    try:
        status = stack.up()
        assert status["input_prefix"] == "in/"
        s3 = boto3_client(status)
        s3.upload_file(str(SAMPLES / "logo.png"), status["bucket"], "out/logo.png")
        s3.upload_file(str(SAMPLES / "logo.png"), status["bucket"], "in/logo.png")
        local = LocalStack(stack.paths.root, status, s3)
        assert local.wait_manifest("in/logo.png")["status"] == "ok"
        time.sleep(1.0)  # the other upload came first: had it been delivered, it would be done by now
        assert local.manifest("out/logo.png") is None
        assert [e["key"] for e in local.journal()] == ["in/logo.png"]
    finally:
        stack.down(purge=True)
    assert_nothing_left(tmp_path / "st")
