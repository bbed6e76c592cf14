"""The cost ledger summed: what the jobs under a prefix did on storage, and what that costs three ways.

Each manifest's ``io`` is its job's ledger (:class:`pipelines.ledger.StorageIO`, counted as the
worker and its tools read and wrote the mount, plus the manifest's own write); this adds them up and
prices the sum with the config layer's table (:func:`config.cost.usd`): the mount way at the configured
cache expiry and at the expiries worth comparing, the old way (GET the source, PUT each output) and EFS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from config.cost import CostSettings, usd
from pipelines.ledger import StorageIO

SUMMED = (*(f.name for f in fields(StorageIO)), "sources", "source_bytes", "bytes_stored")
COMPARED_DAYS = (1, 2, 7, 30)  # the design's advice: 1-2 days for touch-once batches


def total(manifests: Iterable[dict[str, Any]]) -> dict[str, int]:
    """The sum of the manifests' ledgers; ``without_ledger`` counts manifests written before there
    was one (their I/O is unknown, so it is not guessed)."""
    sums = dict.fromkeys(SUMMED, 0)
    sums["without_ledger"] = 0
    for doc in manifests:
        io = doc.get("io")
        if not isinstance(io, dict):
            sums["without_ledger"] += 1
            continue
        for key in SUMMED:
            value = io.get(key, 0)
            sums[key] += value if isinstance(value, int) else 0
    return sums


def bill(
    sums: dict[str, int], prices: CostSettings, cache_days: int, also: Iterable[int] = ()
) -> dict[str, Any]:
    """``sums`` priced: the three ways at ``cache_days`` and the mount way at other cache expiries (those
    worth comparing, and ``also``: what another value would cost)."""
    days = sorted({*COMPARED_DAYS, cache_days, *also})
    return {
        **sums,
        "cache_expiration_days": cache_days,
        "usd": usd(sums, prices, cache_days),
        "mount_way_usd_by_cache_days": {str(d): usd(sums, prices, d)["mount_way"] for d in days},
        "approximate": "list prices in config/cost.py (us-east-1); override them per region under [cost]",
    }
