"""The price table of the cost ledger, and the arithmetic that turns a ledger into dollars.

Prices are approximate us-east-1 list prices (the design's table), per GB (2**30 bytes) and per 1,000
requests; override them per region in the config file's ``[cost]`` table or with
``MEDIA_WORKER_COST__<FIELD>``.  Check the AWS price pages before trusting a figure to the cent.

Three ways to do the same work are priced from one job's ledger (:class:`pipelines.ledger.StorageIO`
as a dict, the manifest's ``io``):

* ``mount_way`` (S3 Files): small reads through the cache (metered at >= 32 KiB each), writes, the
  written bytes kept in the cache until ``sync.cache_expiration_days`` after their last access,
  S3 requests S3 Files makes for us (at most one GET per direct read, one PUT per file exported) and
  a month of S3 Standard storage for the outputs;
* ``old_way`` (download to /tmp, upload each output): one GET per source, one PUT per file, the same
  month of S3 storage;
* ``efs`` (the same work on EFS): the bytes read and written at EFS prices, source and outputs kept
  there a month.

Compute (Lambda duration) is left out: it is the same work either way.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from config.base import Section

GB = float(1 << 30)
DIRECT_READ_MIN = 128 << 10  # S3 Files serves reads of at least this much data straight from S3
CACHED_READ_METERED_MIN = 32 << 10  # a smaller read goes through the cache, metered at least this much


class CostSettings(Section):
    """Approximate prices for the cost ledger (USD; us-east-1 list prices, the design's table)."""

    s3files_cache_gb_month: float = Field(default=0.30, ge=0, description="S3 Files cache, $/GB-month.")
    s3files_small_read_gb: float = Field(default=0.03, ge=0, description="S3 Files small reads, $/GB.")
    s3files_write_gb: float = Field(default=0.06, ge=0, description="S3 Files writes, $/GB.")
    s3_standard_gb_month: float = Field(default=0.023, ge=0, description="S3 Standard storage, $/GB-month.")
    s3_get_per_1k: float = Field(default=0.0004, ge=0, description="S3 GET (and HEAD), $ per 1,000.")
    s3_put_per_1k: float = Field(default=0.005, ge=0, description="S3 PUT, $ per 1,000.")
    efs_storage_gb_month: float = Field(default=0.30, ge=0, description="EFS Standard storage, $/GB-month.")
    efs_read_gb: float = Field(default=0.03, ge=0, description="EFS reads, $/GB.")
    efs_write_gb: float = Field(default=0.06, ge=0, description="EFS writes, $/GB.")
    storage_months: float = Field(
        default=1.0, ge=0, le=120, description="Months of storage priced for the outputs (all three ways)."
    )


def usd(io: Mapping[str, int], prices: CostSettings, cache_days: float) -> dict[str, float]:
    """The three ways' USD for the work in ``io`` (a ledger, or a sum of ledgers, with ``sources``,
    ``source_bytes`` and ``bytes_stored``), with the mount's cache expiry at ``cache_days``."""
    p, months = prices, prices.storage_months
    stored_gb = io.get("bytes_stored", 0) / GB
    s3_storage = stored_gb * p.s3_standard_gb_month * months
    mount = (
        io.get("bytes_read_cached_metered", 0) / GB * p.s3files_small_read_gb
        + io.get("bytes_written", 0) / GB * p.s3files_write_gb
        + stored_gb * p.s3files_cache_gb_month * cache_days / 30
        + io.get("direct_read_requests", 0) * p.s3_get_per_1k / 1000
        + io.get("files_written", 0) * p.s3_put_per_1k / 1000
        + s3_storage
    )
    old = (
        io.get("sources", 1) * p.s3_get_per_1k / 1000
        + io.get("files_written", 0) * p.s3_put_per_1k / 1000
        + s3_storage
    )
    read_gb = (io.get("bytes_read_direct", 0) + io.get("bytes_read_cached", 0)) / GB
    efs = (
        read_gb * p.efs_read_gb
        + io.get("bytes_written", 0) / GB * p.efs_write_gb
        + (io.get("source_bytes", 0) / GB + stored_gb) * p.efs_storage_gb_month * months
    )
    return {"mount_way": round(mount, 10), "old_way": round(old, 10), "efs": round(efs, 10)}
