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
