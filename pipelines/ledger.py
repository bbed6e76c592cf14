"""The cost ledger: a job's I/O on the workspace as S3 Files meters it, part of the plug-in contract.

The workspace (:mod:`pipelines.workspace.mount`) counts every read() and write() of a job into one
:class:`StorageIO`; tool wrappers (:mod:`pipelines.tools.ffmpeg`, :mod:`pipelines.tools.probe`) add what
their programs read and wrote on the mount; the manifest carries it and :mod:`pipelines.batch.cost`
prices it.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

from config.cost import CACHED_READ_METERED_MIN, DIRECT_READ_MIN


@dataclass
class StorageIO:
    """A job's I/O on the workspace, as S3 Files would meter it: the cost ledger of its manifest.

    A read returning >= 128 KiB is *direct* (served from S3); a smaller one is *cached* (through the
    file system's high-performance storage, metered at a minimum of 32 KiB).  Every write() counts.
    The worker's own calls are counted one by one; a tool's reads are its measured bytes in 1 MiB
    pieces, and ``tool_seeks`` the seeks it reported: each may have cost one more, shorter, read.
    """

    bytes_read_direct: int = 0
    bytes_read_cached: int = 0
    bytes_read_cached_metered: int = 0
    read_requests: int = 0
    direct_read_requests: int = 0
    bytes_written: int = 0
    write_requests: int = 0
    files_written: int = 0
    tool_seeks: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # OCR pages and the lease renewer count from their threads

    def read(self, n: int) -> None:
        """One read() that returned ``n`` bytes (0, at end of file, is not a request for data)."""
        if n <= 0:
            return
        with self._lock:
            self.read_requests += 1
            if n >= DIRECT_READ_MIN:
                self.bytes_read_direct += n
                self.direct_read_requests += 1
            else:
                self.bytes_read_cached += n
                self.bytes_read_cached_metered += max(n, CACHED_READ_METERED_MIN)

    def reads_in_pieces(self, total: int, piece: int, seeks: int = 0) -> None:
        """A tool's reads of ``total`` bytes in ``piece``-sized reads (the last one shorter), with
        ``seeks`` seeks between them."""
        full, tail = divmod(total, piece)
        for _ in range(full):
            self.read(piece)
        self.read(tail)
        with self._lock:
            self.tool_seeks += seeks

    def wrote(self, n: int, requests: int = 1) -> None:
        with self._lock:
            self.bytes_written += n
            self.write_requests += requests

    def new_file(self) -> None:
        with self._lock:
            self.files_written += 1

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
