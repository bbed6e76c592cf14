"""Which workspace file an upload event names, when its key may or may not be URL-encoded.

S3 event notifications URL-encode object keys (``+`` for a space); whether S3 events delivered through
EventBridge do is not settled by AWS's documentation (a real event was seen with a ``:`` unencoded).
Decoding a key that was not encoded turns ``a+b.jpg`` into ``a b.jpg``; not decoding one that was turns
``a b.jpg`` into ``a+b.jpg``.  So every reading of the key is a candidate (the decoded one first, then the
key as it came, :attr:`handlers.events.ObjectRef.keys`) and the mount decides: the candidate that exists
with the event's size; between two of the same size, the one whose content has the event's ETag (the MD5
of a single-part upload, or of the parts' MD5s for a multipart one, ``-N``, tried at the common part
sizes).  Nothing is guessed: no match within the wait leaves the first candidate, which the engine then
waits for and fails as retryable, as it does for any object not yet visible.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Sequence

from config.errors import MediaWorkerError
from handlers.events import ObjectRef
from pipelines.workspace.mount import Workspace

MIB = 1 << 20
# part sizes of multipart uploads worth trying for an ETag ending in "-N": the AWS CLI's and boto3's
# default (8 MiB), S3's minimum (5 MiB), and other round sizes tools use
PART_SIZES = tuple(n * MIB for n in (8, 5, 16, 10, 15, 25, 32, 50, 64, 100, 128, 256, 512))
_ETAG = re.compile(r'"?([0-9a-f]{32})(?:-(\d+))?"?\Z')


def resolve(
    ws: Workspace, rels: Sequence[str], ref: ObjectRef, *, wait_s: float, deadline: float
) -> tuple[str, str]:
    """(the candidate ``ref`` names, why): polls the mount until ``wait_s`` (or ``deadline``) runs out."""
    if len(rels) == 1:
        return rels[0], "the only reading of the key"
    limit = min(time.monotonic() + wait_s, deadline)
    step = min(0.5, max(0.05, wait_s / 10))
    while True:
        found = {r: _size(ws, r) for r in rels}
        sized = [r for r, s in found.items() if s is not None and ref.size in (None, s)]
        if len(sized) == 1:
            return sized[0], "the only reading on the mount with the event's size"
        if len(sized) > 1:
            tagged = [r for r in sized if ref.etag and etag_matches(ws, r, ref.etag)]
            if len(tagged) == 1:
                return tagged[0], "the reading on the mount with the event's ETag"
            return rels[0], f"{len(sized)} readings on the mount match the event; the decoded key is taken"
        if time.monotonic() + step > limit:
            return rels[0], "no reading on the mount yet"
        time.sleep(step)


def _size(ws: Workspace, rel: str) -> int | None:
    try:
        return ws.stat_source(rel).st_size
    except MediaWorkerError:
        return None


def etag_matches(ws: Workspace, rel: str, etag: str) -> bool:
    """Does the file's content have this S3 ETag?  One read of the file, whatever the upload's parts."""
    m = _ETAG.match(etag.strip().lower())
    if m is None:  # SSE-KMS/SSE-C ETags are not MD5s: they decide nothing
        return False
    want, parts = m.group(1), m.group(2)
    size = _size(ws, rel)
    if size is None:
        return False
    if parts is None:
        return _digests(ws, rel, ())[0] == want
    n = int(parts)
    sizes = tuple(p for p in PART_SIZES if math.ceil(size / p) == n) if size else ()
    if not sizes:
        return False
    _, per_size = _digests(ws, rel, sizes)
    for part_md5s in per_size.values():
        if hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest() == want:
            return True
    return False


def _digests(ws: Workspace, rel: str, part_sizes: Sequence[int]) -> tuple[str, dict[int, list[bytes]]]:
    """The file's MD5 and, for each part size, its parts' MD5 digests, in one sequential read."""
    whole = hashlib.md5(usedforsecurity=False)
    parts = {p: [hashlib.md5(usedforsecurity=False)] for p in part_sizes}
    filled = dict.fromkeys(part_sizes, 0)
    block = memoryview(bytearray(ws.read_block))
    with open(ws.resolve_source(rel), "rb", buffering=0) as f:
        while n := f.readinto(block):
            ws.io.read(n)
            data = block[:n]
            whole.update(data)
            for p in part_sizes:
                rest = data
                while rest:
                    take = min(len(rest), p - filled[p])
                    parts[p][-1].update(rest[:take])
                    filled[p] += take
                    rest = rest[take:]
                    if filled[p] == p:
                        parts[p].append(hashlib.md5(usedforsecurity=False))
                        filled[p] = 0
    done = {p: [h.digest() for h in hs if filled[p] or h is not hs[-1]] for p, hs in parts.items()}
    return whole.hexdigest(), done
