"""Patterns for reading `strace -y -s 0` output, shared by the mount-contract tests."""

from __future__ import annotations

import re

MIB = 1 << 20
# read(3</ws/a.jpg>, ""..., 1048576) = 19218   (count asked, bytes returned)
READ = re.compile(r"^(?:read|pread64)\(\d+<(?P<path>[^>]*)>, .*, (?P<count>\d+)(?:, \d+)?\) = (?P<ret>-?\d+)")
VREAD = re.compile(r"^(?:readv|preadv|preadv2)\(\d+<(?P<path>[^>]*)>")
OPEN = re.compile(r'^openat\([^,]+, "(?P<path>[^"]*)", (?P<flags>[A-Z_|]+)')
RENAME = re.compile(r"^rename(?:at2?)?\(")
