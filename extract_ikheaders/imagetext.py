"""Strings an image supplies (release, banner, member names, VMCOREINFO values) are the attacker's.

Two rules, each in one place:
- `name_part`: whether such a string may become part of a file name. The kernel's own rules for a
  release (`__NEW_UTS_LEN`: at most 64 bytes; kbuild's KERNELRELEASE: printable, no spaces), plus
  what a path component must not be: no `/`, not `.` or `..`. Anything else gets a name made by
  this tool (`fallback_directory`), never a mangled version of what the image said.
- `shown`: how such a string is printed anywhere (text, --info, --env, errors, JSON): printable
  text as it is, every other character escaped as `\\xNN` (`\\uNNNN` above 0xff), and bytes that
  were not UTF-8 (kept as surrogates by `decode`) as `\\xNN`. A newline can then never split a
  line, nor an escape sequence reach the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_NAME_PART = 64  # __NEW_UTS_LEN
_SURROGATES = range(0xDC80, 0xDD00)  # what "surrogateescape" makes of the bytes 0x80..0xff
# The kernel's banner (init/version.c linux_banner): "Linux version <release> (<builder>) ..."
BANNER = re.compile(rb"Linux version (\d+\.\d+[^\s\x00]*) \([^\n\x00]*")
BANNER_START = b"Linux version "
BANNER_MAX = 512  # bytes read at each candidate


def banner_at(read: Callable[[int], bytes], find: Callable[[int], int]) -> tuple[str, str, int] | None:
    """(release, whole banner line, where) of the first banner: `find(pos)` gives the next
    BANNER_START at or after pos (-1: none), `read(at)` the bytes there (BANNER_MAX of them)."""
    pos = find(0)
    while pos != -1:
        match = BANNER.match(read(pos))
        if match:
            return decode(match.group(1)), decode(match.group(0)).strip(), pos
        pos = find(pos + 1)
    return None


def decode(raw: bytes) -> str:
    """An image's bytes as text, every byte kept (undecodable ones as surrogates for `shown`)."""
    return raw.decode("utf-8", "surrogateescape")


def name_part(text: str | None) -> str | None:
    """`text` if it may be part of a file name, else None."""
    if not text or text in (".", ".."):
        return None
    if len(text) > MAX_NAME_PART or not all("\x21" <= c <= "\x7e" and c != "/" for c in text):
        return None
    return text


def fallback_name(sha256: str) -> str:
    """The directory name used when the image's release cannot be one: from the archive's hash."""
    return f"kheaders-unnamed-{sha256[:12]}"


def shown(text: str) -> str:
    """`text` as it may be printed."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    if code in _SURROGATES:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown_json(value: object) -> object:
    """A report with every string in it `shown` (keys too), ready for json.dumps."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown(k) if isinstance(k, str) else k: shown_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shown_json(v) for v in value]
    return value
