"""The one tar reader: members read front to back, in memory and time bounded by what they declare.

Listing, unpacking, member lookup and the "is this the headers archive?" check all walk a tar through
this module. Python's `tarfile` is not used as the walker, because an archive is an attacker's
input and tarfile (3.11) let three things through: it calls itself once per chained pax or GNU
long-name header (a chain of them ended in RecursionError), it reads each of those headers into
memory whole however large it declares itself (a 256 MiB pax header was held at once), and its
stream mode keeps every header it has seen. Here metadata headers are folded in a loop, each is read
only up to MAX_METADATA bytes, at most MAX_CHAIN of them may precede one member, global pax records
share one MAX_METADATA budget, and nothing is kept once a member is passed.

What is reused from tarfile is its parsing of one 512-byte header block (TarInfo.frombuf: the
checksum, octal and base-256 numbers, the ustar prefix), which is bounded by the block's size, and
its TarInfo as the member record, so that callers see the names and fields tarfile would give.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterator

from ..errors import ParserSignal, UnsafeArchive
from ..imagetext import shown

BLOCK = tarfile.BLOCKSIZE
MAX_METADATA = 64 << 10  # one pax or GNU long-name header's data; kbuild's names are far shorter
MAX_CHAIN = 16  # metadata headers before one member (GNU tar writes at most three: L, K and x)
_LONG_NAME, _LONG_LINK = tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK
_PAX_LOCAL = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_PAX_GLOBAL = tarfile.XGLTYPE
_METADATA = (_LONG_NAME, _LONG_LINK, *_PAX_LOCAL, _PAX_GLOBAL)
_PAX_RECORD_LENGTH = re.compile(rb"([0-9]{1,20}) ")
_SKIP_CHUNK = 1 << 20

Reader = Callable[[int], bytes]  # up to n bytes of the tar, b"" at its end


class BadTar(ParserSignal):
    """The tar data is malformed or ends early: its caller reports it as damage, with context."""


class TarWalker:
    """The members of one tar read from `read`, front to back.

    Iterating yields each member's TarInfo (metadata headers folded into it, `offset` at the first
    of them); while it is the current member, `read_data` gives its data. `complete` is True once
    the end-of-archive block was read. A regular member's data is skipped if not read.
    """

    def __init__(self, read: Reader, *, ustar_only: bool = False) -> None:
        self._read = read
        self._ustar_only = ustar_only  # the quick recognizer: a v7 header is not the headers archive
        self._offset = 0  # in the tar, of the next unread byte
        self._data_left = 0  # of the current member
        self._padding = 0
        self._globals: dict[str, str] = {}
        self._globals_size = 0
        self.complete = False

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            self._skip_rest()
            info = self._next_member()
            if info is None:
                self.complete = True
                return
            size = data_size(info)
            self._data_left, self._padding = size, -size % BLOCK
            yield info

    def read_data(self, size: int) -> bytes:
        """Up to `size` bytes of the current member's data (b"" when it is all read)."""
        want = min(size, self._data_left)
        if not want:
            return b""
        data = self._exactly(want, "the tar data ends inside a member's data")
        self._data_left -= len(data)
        return data

    # Headers -----------------------------------------------------------------------------------

    def _next_member(self) -> tarfile.TarInfo | None:
        """The next member with its metadata headers applied; None at the end-of-archive block."""
        chain: list[tuple[bytes, str | dict[str, str]]] = []
        first_offset = self._offset
        while True:
            info = self._header()
            if info is None:
                if chain:
                    raise BadTar("the archive ends after an extended header, with no member for it")
                return None
            if info.type not in _METADATA:
                break
            if len(chain) == MAX_CHAIN:
                raise UnsafeArchive(f"{shown(info.name)}: more than {MAX_CHAIN} extended headers before one member")
            chain.append((info.type, self._metadata(info)))
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchive(f"{shown(info.name)}: sparse files are not supported")
        _apply_pax(info, self._globals)
        for kind, value in reversed(chain):  # the first header is applied last, as tarfile does
            _apply(info, kind, value)
        info.offset = first_offset
        info.offset_data = self._offset
        return info

    def _header(self) -> tarfile.TarInfo | None:
        """One header block parsed; None for the end-of-archive block."""
        at = self._offset
        block = self._read_block()
        if not any(block):
            return None
        if self._ustar_only and block[257:262] != b"ustar":
            raise BadTar(f"no ustar header at tar offset {at:#x}")
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise BadTar(f"bad tar header at tar offset {at:#x} ({exc})") from None
        if info.size < 0:  # base-256 sizes can be negative; so can a pax or GNU header's
            raise BadTar(f"{shown(info.name)}: negative size {info.size} at tar offset {at:#x}")
        return info

    def _read_block(self) -> bytes:
        return self._exactly(BLOCK, "the tar data ends inside a header",
                             if_none="the tar data ends without its end-of-archive block")

    def _metadata(self, info: tarfile.TarInfo) -> str | dict[str, str]:
        if info.size > MAX_METADATA:
            raise UnsafeArchive(f"{shown(info.name)}: extended header of {info.size:,} bytes "
                                f"(at most {MAX_METADATA:,} allowed)")
        data = self._exactly(info.size, "the tar data ends inside an extended header")
        self._skip(-info.size % BLOCK)
        if info.type in (_LONG_NAME, _LONG_LINK):
            return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        records = _pax_records(data)
        if info.type == _PAX_GLOBAL:
            self._globals_size += len(data)
            if self._globals_size > MAX_METADATA:
                raise UnsafeArchive(f"global extended headers of more than {MAX_METADATA:,} bytes in all")
            self._globals.update(records)
            return {}
        return records

    # Data --------------------------------------------------------------------------------------

    def _skip_rest(self) -> None:
        self._skip(self._data_left + self._padding)
        self._data_left = self._padding = 0

    def _skip(self, size: int) -> None:
        while size:
            got = self._exactly(min(size, _SKIP_CHUNK), "the tar data ends inside a member's data")
            size -= len(got)

    def _exactly(self, size: int, problem: str, if_none: str = "") -> bytes:
        """`size` bytes of the tar; BadTar saying `problem` (or `if_none` when none are left) if fewer."""
        data = self._read_all(size)
        if len(data) < size:
            raise BadTar(if_none if if_none and not data else f"{problem} (tar offset {self._offset + len(data):#x})")
        self._offset += size
        return data

    def _read_all(self, size: int) -> bytes:
        """Up to `size` bytes, fewer only where the tar ends (a reader may return short pieces)."""
        parts = []
        while size:
            piece = self._read(size)
            if not piece:
                break
            parts.append(piece)
            size -= len(piece)
        return b"".join(parts)


def data_size(info: tarfile.TarInfo) -> int:
    """The bytes of data after a member's header (tarfile skips or reads exactly these)."""
    return info.size if info.isreg() or info.type not in tarfile.SUPPORTED_TYPES else 0


def starts_with_header(tar: bytes) -> bool:
    """Whether `tar`, a decoded prefix, begins with a tar header whose checksum is right."""
    try:
        tarfile.TarInfo.frombuf(tar[:BLOCK], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def names_at_start(tar: bytes) -> Iterator[str]:
    """Names of the whole ustar members at the start of `tar`, a decoded prefix: stops quietly at
    the first header that is no ustar header or lies past the prefix."""
    from io import BytesIO

    walker = TarWalker(BytesIO(tar).read, ustar_only=True)
    try:
        for info in walker:
            yield info.name
    except (BadTar, UnsafeArchive):
        return


def _pax_records(data: bytes) -> dict[str, str]:
    """The "LENGTH KEY=VALUE\\n" records of a pax header (POSIX.1-2001); UTF-8, other bytes kept."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos]:
        match = _PAX_RECORD_LENGTH.match(data, pos)
        length = int(match.group(1)) if match else 0
        record = data[pos : pos + length]
        if not match or length <= len(match.group(0)) or len(record) < length or not record.endswith(b"\n"):
            raise BadTar("a malformed pax extended header record")
        key, sep, value = record[len(match.group(0)) : -1].partition(b"=")
        if not sep or not key:
            raise BadTar("a malformed pax extended header record")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _apply(info: tarfile.TarInfo, kind: bytes, value: str | dict[str, str]) -> None:
    if isinstance(value, dict):
        _apply_pax(info, value)
    elif kind == _LONG_NAME:
        info.name = value.removesuffix("/") if info.isdir() else value
    else:
        info.linkname = value


def _apply_pax(info: tarfile.TarInfo, records: dict[str, str]) -> None:
    """tarfile's meaning of the pax keywords; GNU sparse ones refuse the archive (not supported)."""
    for key, value in records.items():
        if key.startswith("GNU.sparse."):
            raise UnsafeArchive(f"{shown(info.name)}: sparse files are not supported")
        if key == "path":
            info.name = value.rstrip("/")
        elif key == "linkpath":
            info.linkname = value
        elif key == "size":
            info.size = _pax_int(value, info.name)
        elif key == "mtime":
            try:
                info.mtime = float(value)
            except ValueError:
                info.mtime = 0
        elif key in ("uid", "gid"):
            try:
                setattr(info, key, int(value))
            except ValueError:
                setattr(info, key, 0)
        elif key in ("uname", "gname"):
            setattr(info, key, value)


def _pax_int(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise BadTar(f"{shown(name)}: pax size {shown(value[:40])!r} is not a number")
    return int(value)
