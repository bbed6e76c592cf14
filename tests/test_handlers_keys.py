"""Object keys -> workspace paths: Powertools decoding, and property tests that no key (unicode, spaces and
'+', '%' escapes, '..' segments, 1,024+ bytes, NUL) ever yields a path outside the workspace or a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lambda_support import BUCKET, EVENTS, FakeContext, configure, render, s3_key

from config.aws import AwsSettings
from handlers import events, lambda_function
from handlers.events import KeyMapper, Rejected
from handlers.s3_trigger import RetryLater

SEGMENT_CHARS = st.characters(codec="utf-8", exclude_characters="/")
segment = st.one_of(
    st.sampled_from(["..", ".", "", "a b", "a+b", "100%", "%2F", "%2e%2e", "~", "é", "日本", "\u202e", " "]),
    st.text(SEGMENT_CHARS, min_size=1, max_size=20),
)
keys = st.one_of(
    st.lists(segment, min_size=1, max_size=8).map("/".join),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
    st.integers(1000, 1100).map(lambda n: "in/" + "x" * n + ".jpg"),  # around the 1,024-byte limit
    st.integers(300, 400).map(lambda n: "in/" + "é" * n + ".jpg"),  # 2 bytes a character
)


def s3_notification(key: str, bucket: str = BUCKET) -> dict[str, Any]:
    ev = render(
        EVENTS / "s3-put-two-records.json",
        bucket=bucket,
        key1=s3_key(key),
        size1="10",
        etag1="e",
        version1="v",
        key2=s3_key(key),
        size2="10",
        etag2="e",
        version2="v",
    )
    ev["Records"] = ev["Records"][:1]
    return ev


def test_powertools_decodes_object_key_but_not_the_per_record_key() -> None:
    """The Powertools behaviour events.py relies on (3.37): S3Event.object_key is unquote_plus'ed, the
    per-record S3Object.key is the raw, URL-encoded value.  If a future version decodes per record, this
    test says so (and _s3_record keeps working either way)."""
    ev = S3Event(s3_notification("in/my photo+1 100%.jpg"))
    assert ev.record.s3.get_object.key == "in/my+photo%2B1+100%25.jpg"
    assert ev.object_key == "in/my photo+1 100%.jpg"


def test_each_record_is_decoded_on_its_own() -> None:
    ev = render(
        EVENTS / "s3-put-two-records.json",
        bucket=BUCKET,
        key1=s3_key("a b.jpg"),
        size1="1",
        etag1="e",
        version1="v1",
        key2=s3_key("c+d é.png"),
        size2="2",
        etag2="f",
        version2="v2",
    )
    refs = events.s3_notification(ev)
    assert [(r.key, r.size, r.version_id) for r in refs] == [("a b.jpg", 1, "v1"), ("c+d é.png", 2, "v2")]
    assert refs[1].event_name == "ObjectCreated:CompleteMultipartUpload" and refs[1].ignore is None


@pytest.mark.parametrize(
    ("prefix", "key", "expected"),
    [
        ("", "in/a.jpg", "in/a.jpg"),
        ("media/", "media/in/a b.jpg", "in/a b.jpg"),
        ("media/", "mediax/in/a.jpg", Rejected),
        ("media/", "media/", Rejected),
        ("", "in/../../etc/passwd", Rejected),
        ("", "/abs.jpg", Rejected),
        ("", "in//a.jpg", Rejected),
        ("", "in/./a.jpg", Rejected),
        ("", "in/a\0.jpg", Rejected),
        ("", "x" * 1025, Rejected),
        ("", "/".join(["é" * 127] * 4) + "/abc", "/".join(["é" * 127] * 4) + "/abc"),  # 1,023 bytes
        ("", "/".join(["é" * 127] * 4) + "/abcde", Rejected),  # 1,025 bytes
        ("", "a" * 255, "a" * 255),  # the longest file name
        ("", "a" * 256, Rejected),
    ],
)
def test_key_mapper_cases(prefix: str, key: str, expected: object) -> None:
    mapper = KeyMapper(AwsSettings(bucket=BUCKET, key_prefix=prefix))
    if expected is Rejected:
        with pytest.raises(Rejected):
            mapper.relpath(BUCKET, key)
    else:
        assert mapper.relpath(BUCKET, key) == expected


def test_bucket_checks() -> None:
    with pytest.raises(Rejected, match="not configured"):
        KeyMapper(AwsSettings()).relpath("any", "a.jpg")
    with pytest.raises(Rejected, match="mounts 'mine'"):
        KeyMapper(AwsSettings(bucket="mine")).relpath("yours", "a.jpg")
    assert KeyMapper(AwsSettings()).relpath(None, "a.jpg") == "a.jpg"  # prefix runs name no bucket


def inside(root: Path, rel: str) -> bool:
    path = os.path.normpath(os.path.join(root, rel))
    return path.startswith(str(root) + os.sep)


@settings(max_examples=400, deadline=None)
@given(key=keys, prefix=st.sampled_from(["", "media/", "a b/é/"]))
def test_any_key_maps_inside_the_workspace_or_is_rejected(key: str, prefix: str) -> None:
    root = Path("/mnt/workspace")
    mapper = KeyMapper(AwsSettings(bucket=BUCKET, key_prefix=prefix))
    full = prefix + key
    # every event shape decodes the key back to exactly what was uploaded
    decoded = {
        "s3": events.s3_notification(s3_notification(full))[0].key,
        "sqs": events.message_body(json.dumps(s3_notification(full)))[0].key,
        "map": next(iter(events.map_items([{"Key": full, "Size": 1}], BUCKET))).key,  # type: ignore[union-attr]
    }
    assert set(decoded.values()) == {full}, decoded
    try:
        rel = mapper.relpath(BUCKET, full)
    except Rejected as exc:
        assert str(exc)
        return
    assert rel == key  # exact: never a normalised guess at another object
    assert inside(root, rel)
    assert "\0" not in rel and len(rel.encode("utf-8")) <= 1024
    assert all(p not in ("", ".", "..") and len(p.encode()) <= 255 for p in rel.split("/"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys)
def test_hostile_keys_through_the_handler_never_escape_or_crash(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "in").mkdir(exist_ok=True)
    configure(monkeypatch, ws)
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        res = lambda_function.handler(s3_notification(key), FakeContext())
        assert set(res["counts"]) <= {"ignored", "rejected", "skipped"}
    except RetryLater as exc:  # a well-formed key whose object is not on the mount: sync lag
        assert "not on the mount" in str(exc)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (ws / "processed").exists()


# -- the key may or may not be URL-encoded: the mount decides (handlers/keys.py) ----------------------
#
# Real files on a real workspace folder, events in each shape, through `media-worker invoke`. Each target
# has a decoy: the file the *other* reading of its key names, of another size, so a handler that took the
# wrong reading would process the decoy.

TARGETS = ["a+b.jpg", "100%.jpg", "my photo.jpg", "a:b.jpg", "é日本 +x.jpg", "%41.jpg"]
S3_BUCKET = "media-worker-local"


def jpeg(path: Path, width: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, 40), (width % 256, 90, 160)).save(path, quality=90)


def etag(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def eventbridge_event(key: str, path: Path) -> dict[str, Any]:
    return render(
        EVENTS / "eventbridge-object-created.json",
        bucket=S3_BUCKET,
        key=key,
        size=str(path.stat().st_size),
        etag=etag(path),
        version="v1",
    )


def sqs_of(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Messages as the upload queue hands them to the function (EventBridge -> SQS)."""
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": json.dumps(b),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795730000000"},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:uploads",
                "awsRegion": "eu-west-1",
            }
            for i, b in enumerate(bodies)
        ]
    }


def cli_invoke(ws: Path, event: dict[str, Any], tmp: Path) -> dict[str, Any]:
    from conftest import cli_env, run_cli

    path = tmp / "event.json"
    path.write_text(json.dumps(event))
    res = run_cli(
        "invoke", "-e", str(path), "-w", str(ws), "--bucket", S3_BUCKET,
        env=cli_env(MEDIA_WORKER_SYNC__VISIBILITY_WAIT_SECONDS="0"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(json.loads(res.stdout))


def manifests(ws: Path) -> set[str]:
    root = ws / "processed/_manifests"
    return {p.relative_to(root).as_posix().removesuffix(".json") for p in root.rglob("*.json")}


@pytest.mark.parametrize("shape", ["s3-encoded", "eventbridge-raw", "eventbridge-encoded"])
def test_every_reading_of_a_key_finds_the_uploaded_object(shape: str, tmp_path: Path) -> None:
    """`+`, `%`, space, colon and non-ASCII keys, URL-encoded (as S3 notifications carry them) or not (as
    EventBridge may): the object with the event's size is processed, never the other reading's file."""
    from urllib.parse import quote_plus, unquote_plus

    ws = tmp_path / "ws"
    expected, decoys = set(), set()
    for i, target in enumerate(TARGETS):
        key = target if shape == "eventbridge-raw" else quote_plus(target, safe="/")
        other = unquote_plus(key) if key == target else key  # what the wrong reading would name
        jpeg(ws / target, 60 + 10 * i)
        if other != target:
            jpeg(ws / other, 300 + 10 * i)
            decoys.add(other)
        expected.add(target)
    if shape == "s3-encoded":
        records = [s3_notification(t, bucket=S3_BUCKET)["Records"][0] for t in TARGETS]  # encodes
        for rec, t in zip(records, TARGETS, strict=True):
            rec["s3"]["object"].update(size=(ws / t).stat().st_size, eTag=etag(ws / t))
        doc = cli_invoke(ws, {"Records": records}, tmp_path)
        assert doc["counts"] == {"ok": len(TARGETS)}, doc
    else:
        bodies = [
            eventbridge_event(t if shape == "eventbridge-raw" else quote_plus(t, safe="/"), ws / t)
            for t in TARGETS
        ]
        doc = cli_invoke(ws, sqs_of(bodies), tmp_path)
        assert doc == {"batchItemFailures": []}, doc
    assert decoys, "every shape has at least one key whose readings differ"
    assert manifests(ws) == expected, (manifests(ws), expected)


def tiff(path: Path, shade: int, size: tuple[int, int] = (64, 48)) -> None:
    """Uncompressed: two of the same pixel size are the same number of bytes."""
    from PIL import Image

    Image.new("RGB", size, (shade, 40, 200)).save(path, compression=None)


@pytest.mark.parametrize("multipart", [False, True], ids=["single-part", "multipart-8MiB"])
def test_the_etag_decides_between_two_files_of_the_event_size(multipart: bool, tmp_path: Path) -> None:
    """EventBridge key 'x+y.tif': both 'x y.tif' and 'x+y.tif' exist with the same size; the event's
    ETag (an MD5, or for a multipart upload the MD5 of its 8 MiB parts' MD5s, '-N') names the right one."""
    import hashlib

    ws = tmp_path / "ws"
    ws.mkdir()
    size = (2000, 1500) if multipart else (64, 48)  # 9 MB: two 8 MiB parts
    tiff(ws / "x+y.tif", 10, size)
    tiff(ws / "x y.tif", 250, size)
    target = ws / "x+y.tif"
    assert target.stat().st_size == (ws / "x y.tif").stat().st_size
    event = eventbridge_event("x+y.tif", target)
    if multipart:
        data, part = target.read_bytes(), 8 << 20
        digests = b"".join(
            hashlib.md5(data[i : i + part], usedforsecurity=False).digest() for i in range(0, len(data), part)
        )
        n = -(-len(data) // part)
        assert n == 2
        event["detail"]["object"]["etag"] = hashlib.md5(digests, usedforsecurity=False).hexdigest() + f"-{n}"
    doc = cli_invoke(ws, event, tmp_path)
    assert doc["counts"] == {"ok": 1}, doc
    assert manifests(ws) == {"x+y.tif"}
