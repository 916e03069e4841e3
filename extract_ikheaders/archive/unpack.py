"""List and unpack the headers archive, which is untrusted input.

Members are written one by one with directory-relative, no-follow system calls into a private
temporary directory beside the target, renamed into place only when the whole archive is done.

Policy, stricter than tarfile's "data" filter:
- written: regular files, directories, and relative symlinks whose target stays inside the tree
  (a target may only start with "../" steps, never climb after a name, so that resolving it can
  never pass through another link and leave the tree);
- hard links: written as a copy of a regular file the archive put in the tree before them;
  a hard link to anything else is refused;
- skipped (Incident "skipped"): device nodes, fifos, unknown member types, and a second regular
  file or symlink of a name already written (the first is kept);
- refused, with nothing written (UnsafeArchive): absolute names, "..", control characters,
  links leaving the tree, writing through a symlink or a file, a name reused with another type,
  sparse files, oversized extended headers, and exceeding the size or member limits;
- modes are 0o644 (0o755 with any exec bit), directories 0o755; dropping setuid/setgid/sticky is
  an Incident ("mode changed"); owners are never set; modification times are.

max_bytes bounds the file data decoded (written or skipped), checked against each member's declared
size before its data is read, and again against the bytes actually written. A damaged xz or tar
stream is Damaged; failing to write the output (disk full, ...) is UsageError.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import math
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import imagetext
from ..errors import Damaged, ExtractError, UnsafeArchive, UsageError
from ..model import Extracted, Incident, Member
from . import tarwalk, xzstream

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_MEMBERS = 200_000
# Written into every tree this module unpacks: which archive it holds. --force replaces only a
# directory that has one (a tree this tool made), and --env reuses one only when it names the
# same archive. The name is refused as an archive member at the top of the tree.
STAMP = ".extract-ikheaders.json"
MAX_INCIDENTS = 100  # listed one by one; more are counted

_CHUNK = 1 << 20
_INPUT_STEP = 64 << 10  # xz input fed at a time: a decoding error's offset is known to within it
_MAX_TRAILER = 1 << 20  # decoded bytes after the tar's end read to check the xz stream ends well
_NAME_MAX = 255
_PATH_MAX = 4095
_SPECIAL_BITS = 0o7000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


_STREAM_ERRORS = (lzma.LZMAError, EOFError, ValueError, tarwalk.BadTar)


# Public API -----------------------------------------------------------------------------------


def list_members(archive: bytes, *, max_members: int = DEFAULT_MAX_MEMBERS, max_bytes: int = DEFAULT_MAX_BYTES,
                 root: bool = False, base_offset: int = 0) -> tuple[Member, ...]:
    """The members in archive order, names without their leading "./"; the root entry ("./")
    only with `root`, as `tar -t` lists it. The whole archive is decoded: Damaged unless every
    block's check passes (`base_offset`, the archive's place in its container, is added to the
    offsets in messages)."""
    members: list[Member] = []
    with _open_stream(archive, _Limits(max_bytes, max_members, Damaged), base_offset=base_offset) as stream:
        for info in stream:
            name = _listed_name(info.name)
            if name or root:
                stored = info.name.rstrip("/") + "/" if info.isdir() else info.name
                members.append(Member(name, info.size if info.isreg() else 0, _kind(info), stored))
    return tuple(members)


def read_members(archive: bytes, names: tuple[str, ...], limit: int) -> dict[str, bytes]:
    """The data of the regular files `names` (without their leading "./") that are present and at
    most `limit` bytes, decoding the archive only up to the last of them."""
    wanted, found = set(names), {}
    with _open_stream(archive, _Limits(DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS, Damaged)) as stream:
        for info in stream:
            name = _listed_name(info.name)
            if name in wanted and info.isreg():
                wanted.discard(name)
                if info.size <= limit:
                    found[name] = _read_all(stream)
                if not wanted:
                    break
    return found


def _read_all(stream: _Stream) -> bytes:
    parts = []
    while piece := stream.read():
        parts.append(piece)
    return b"".join(parts)


def extract(archive: bytes, dest: Path, *, force: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
            max_members: int = DEFAULT_MAX_MEMBERS, salvage: bool = False, base_offset: int = 0) -> Extracted:
    """Unpack `archive` into the directory `dest`, all or nothing (see the module's policy).

    The whole archive is decoded, which verifies every block's check; `base_offset` as in list_members.

    With `salvage`, a damaged archive's members that decoded completely before the damage are
    kept, and Extracted.lost says what was not recovered (the caller reports it as damage).
    """
    dest = Path(dest)
    limits = _Limits(max_bytes, max_members, UnsafeArchive)
    _check_target(dest, force)
    tmp = _make_temp(dest, "tmp")
    try:
        tree = _unpack(archive, tmp, dest, limits, salvage, base_offset)
        incidents = _move_into_place(tmp, dest, force)
    except OSError as exc:
        _discard(tmp)
        raise UsageError(f"cannot write {dest}: {exc.strerror or exc}") from None
    except BaseException:
        _discard(tmp)
        raise
    return Extracted(directory=str(dest), members=tree.members, bytes_written=tree.bytes_written,
                     incidents=(*tree.all_incidents(), *incidents), lost=tree.lost)


# Reading the archive --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    max_bytes: int
    max_members: int
    error: Callable[[str], ExtractError]

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_members < 0:
            raise UsageError("the size and member limits cannot be negative")


class _Stream:
    """The archive's members read once, front to back (tarwalk), with the limits enforced as they come."""

    def __init__(self, walker: tarwalk.TarWalker, limits: _Limits, source: _XzReader | _SalvageReader) -> None:
        self._walker = walker
        self._limits = limits
        self._source = source  # says why the decoded data ended early, and where the xz data failed
        self._members = 0
        self._data = 0
        self._current: tarfile.TarInfo | None = None

    @property
    def complete(self) -> bool:
        """Whether the tar's end-of-archive block has been read."""
        return self._walker.complete

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        members = iter(self._walker)
        while True:
            with self.reading():
                info = next(members, None)
            if info is None:
                return
            self._current = info
            self._admit(info)
            yield info

    def read(self) -> bytes:
        """The current member's next piece of data; b"" when it is all read."""
        with self.reading():
            return self._walker.read_data(_CHUNK)

    @contextmanager
    def reading(self) -> Iterator[None]:
        try:
            yield
        except _STREAM_ERRORS as exc:
            stop = self._source.stop_reason()
            cause = f"{_reason(exc)} ({stop})" if stop else _reason(exc)
            raise Damaged(f"the headers archive is corrupt or truncated {self._where()}: {cause}",
                          offset=self._source.failed_at) from None

    def _where(self) -> str:
        if self._current is None:
            return "at its first member"
        return f"in or after member {_shown(self._current.name)} (tar offset {self._current.offset:#x})"

    def _admit(self, info: tarfile.TarInfo) -> None:
        self._members += 1
        if self._members > self._limits.max_members:
            raise self._limits.error(f"{_shown(info.name)}: the archive has more than "
                                     f"{self._limits.max_members:,} members; raise the limit with "
                                     "--max-members")
        size = _data_size(info)
        if size < 0:
            raise Damaged(f"{_shown(info.name)}: negative size {size}")
        if size > self._limits.max_bytes - self._data:
            raise self._limits.error(_over_size(info.name, size, self._limits.max_bytes))
        self._data += size


@contextmanager
def _open_stream(archive: bytes, limits: _Limits, salvage: bool = False, base_offset: int = 0) -> Iterator[_Stream]:
    # like LZMAFile, unlike tarfile's "r|xz", _XzReader raises EOFError when the xz stream is cut short
    raw = _SalvageReader(archive) if salvage else _XzReader(archive, base_offset)
    with io.BufferedReader(raw) as decoded:
        stream = _Stream(tarwalk.TarWalker(decoded.read), limits, raw)
        yield stream
        if stream.complete:  # a lookup that stopped early leaves the rest undecoded
            with stream.reading():
                decoded.read(_MAX_TRAILER)


class _SalvageReader(io.RawIOBase):
    """A damaged archive decoded only as far as whole LZMA2 chunks decode (xzstream.validated_pieces).

    Where they stop it reads as the end of the data, so that every byte before it reaches the tar
    reader (an exception would take the buffered bytes with it); the tar reader then finds a member
    or header cut short, and `stop_reason` says why the data stopped."""

    def __init__(self, archive: bytes) -> None:
        super().__init__()
        self._pieces = xzstream.validated_pieces(archive)
        self._piece = memoryview(b"")
        self._stop: str | None = None
        self.failed_at: int | None = None  # the stop reason says where

    def readable(self) -> bool:
        return True

    def stop_reason(self) -> str | None:
        return self._stop

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._piece:
            try:
                piece = next(self._pieces, None)
            except xzstream.SalvageStop as exc:
                self._stop, piece = str(exc), None
            if piece is None:
                return 0
            self._piece = memoryview(piece)
        with memoryview(buffer) as view, view.cast("B") as out:
            n = min(len(out), len(self._piece))
            out[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        return n


class _XzReader(io.RawIOBase):
    """The decoded archive as lzma.LZMAFile reads it (concatenated streams; EOFError when the input
    ends inside a stream; trailing bytes that are no xz stream ignored), plus the memory limit that
    LZMAFile has no parameter for: a block header may ask liblzma for a 4 GiB dictionary."""

    def __init__(self, archive: bytes, base_offset: int = 0) -> None:
        super().__init__()
        self._input = archive
        self._pos = 0
        self._base = base_offset  # the archive's place in its container, for the offsets in messages
        self._decoder: lzma.LZMADecompressor | None = xzstream.decoder_for_archive()
        self.failed_at: int | None = None

    def readable(self) -> bool:
        return True

    def stop_reason(self) -> str | None:
        return None

    def close(self) -> None:
        self._decoder = None  # its dictionary goes now, not when a traceback holding this reader does
        super().close()

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:
            data = self._read(len(out))
            out[: len(data)] = data
        return len(data)

    def _read(self, size: int) -> bytes:
        while self._decoder is not None and size:
            if self._decoder.eof:
                rest = self._decoder.unused_data or self._next_input()
                if not rest:
                    break
                self._decoder = xzstream.decoder_for_archive()
                try:
                    data = self._decoder.decompress(rest, size)
                except lzma.LZMAError:
                    self._decoder = None  # not another stream: ignored, as LZMAFile does
                    break
            else:
                chunk = b""
                if self._decoder.needs_input:
                    chunk = self._next_input()
                    if not chunk:
                        self.failed_at = self._base + self._pos
                        raise EOFError(f"the xz data ends at offset {self.failed_at:#x} before the stream does")
                data = self._decoded(chunk, size)
            if data:
                return data
        return b""

    def _decoded(self, chunk: bytes, size: int) -> bytes:
        assert self._decoder is not None
        try:
            return self._decoder.decompress(chunk, size)
        except lzma.LZMAError as exc:
            self.failed_at = self._base + self._pos
            raise lzma.LZMAError(f"{xzstream.decode_error(exc)} near offset {self.failed_at:#x}: {exc}") from None

    def _next_input(self) -> bytes:
        chunk = self._input[self._pos : self._pos + _INPUT_STEP]
        self._pos += len(chunk)
        return chunk


def _data_size(info: tarfile.TarInfo) -> int:
    return tarwalk.data_size(info)


def _kind(info: tarfile.TarInfo) -> str:
    checks = ((info.isreg, "file"), (info.isdir, "dir"), (info.issym, "symlink"), (info.islnk, "hardlink"),
              (info.ischr, "chardev"), (info.isblk, "blockdev"), (info.isfifo, "fifo"))
    return next((kind for check, kind in checks if check()), "other")


def _listed_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name


# Writing the tree -----------------------------------------------------------------------------


def _unpack(archive: bytes, tmp: Path, dest: Path, limits: _Limits, salvage: bool = False,
            base_offset: int = 0) -> _Tree:
    tree = _Tree(tmp, limits.max_bytes)
    try:
        try:
            _add_all(archive, tree, dest, limits, salvage, base_offset)
        except Damaged as exc:
            if not salvage:
                raise
            # Everything before the break decoded in order, so it is what the archive holds;
            # the member being written when the data broke off, and all after it, are lost.
            tree.lost = _lost(tree, exc)
        _write_stamp(tmp, archive, tree)
        tree.finish()  # last: directory times
    finally:
        tree.close()
    return tree


def _lost(tree: _Tree, damage: Damaged) -> str | None:
    """What a damaged archive could not give: the member cut off and all after it, or all after the
    last complete one; None when the damage lies after the tar's end."""
    cut = tree.drop_partial()
    if tree.tar_complete:
        return None
    if cut:
        return f"{_shown(cut)} (cut off) and every member after it: {damage}"
    last = f"member {_shown(tree.last_member)}" if tree.last_member else "the archive's start"
    return f"every member after {last}: {damage}"


def _add_all(archive: bytes, tree: _Tree, dest: Path, limits: _Limits, salvage: bool, base_offset: int) -> None:
    with _open_stream(archive, limits, salvage, base_offset) as stream:
        for info in stream:
            try:
                tree.add(info, stream)
            except OSError as exc:
                raise UsageError(f"cannot write {dest}: {_shown(info.name)}: {exc.strerror or exc}") from None
            tree.last_member = _listed_name(info.name)
        tree.tar_complete = True  # a damage after the tar's end costs no member


class _Tree:
    """The tree under a private root, and what the archive has put where so far.

    Every check is made against this record of what was written, then the system calls refuse to
    follow links anyway.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self._root_fd = os.open(root, _DIR_OPEN)
        # The directories last stepped into, outermost first, kept open: an archive is sorted, so
        # the next member is mostly in the same directory (one open per file, not one per component).
        self._open_chain: list[tuple[tuple[str, ...], int]] = []
        self._max_bytes = max_bytes
        self._kinds: dict[tuple[str, ...], str] = {(): "directory"}
        self._dir_times: dict[tuple[str, ...], int | None] = {}
        self.incidents: list[Incident] = []
        self.more_incidents = 0
        self.members = 0
        self.bytes_written = 0
        self.partial: tuple[str, ...] | None = None
        self.lost: str | None = None  # salvage: what could not be recovered
        self.last_member = ""  # the last member added whole
        self.tar_complete = False

    def close(self) -> None:
        for _, fd in self._open_chain:
            os.close(fd)
        self._open_chain.clear()
        os.close(self._root_fd)

    def add(self, info: tarfile.TarInfo, stream: _Stream) -> None:
        parts = _safe_parts(info.name, info.name, "name")
        if parts == (STAMP,):
            raise UnsafeArchive(f"{_shown(info.name)}: the name this tool keeps for its own stamp")
        if info.isdir():
            self._add_dir(info, parts)
        elif not parts:
            raise UnsafeArchive(f"{_shown(info.name)}: a {_kind(info)} in place of the tree's top directory")
        elif info.isreg():
            self._add_file(info, parts, stream)
        elif info.issym():
            self._add_symlink(info, parts)
        elif info.islnk():
            self._add_hardlink(info, parts)
        else:
            self._skip(parts, _SKIPPED.get(info.type, f"unsupported member type {info.type!r}"))

    def finish(self) -> None:
        # directory times last, as writing into a directory changes its time
        for parts, ns in self._dir_times.items():
            if ns is not None and not parts:
                os.utime(self._root_fd, ns=(ns, ns))
            elif ns is not None:
                parent = self._open_dir(parts[:-1], "/".join(parts))
                try:
                    os.utime(parts[-1], ns=(ns, ns), dir_fd=parent, follow_symlinks=False)
                finally:
                    os.close(parent)
        os.fchmod(self._root_fd, 0o755)

    def _add_dir(self, info: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        self._already(info, parts, "directory")
        os.close(self._open_dir(parts, info.name))
        self._note_special_bits(info, parts, 0o755)
        if parts and parts not in self._dir_times:
            self.members += 1
        self._dir_times[parts] = _mtime_ns(info)

    def _add_file(self, info: tarfile.TarInfo, parts: tuple[str, ...], stream: _Stream) -> None:
        if self._already(info, parts, "file"):
            self._skip(parts, "duplicate entry; the first one is kept")
            return
        fd = self._create_file(parts, info.name)
        self.partial = parts  # until its last byte has decoded
        try:
            while chunk := stream.read():
                self._write(fd, chunk, info.name)
            self._finish_file(fd, info, parts)
        finally:
            os.close(fd)
        self.partial = None
        self.members += 1

    def drop_partial(self) -> str | None:
        """Remove the file that was being written when the data broke off; its name."""
        if self.partial is None:
            return None
        parts, self.partial = self.partial, None
        parent = self._open_dir(parts[:-1], "/".join(parts))
        try:
            os.unlink(parts[-1], dir_fd=parent)
        finally:
            os.close(parent)
        self._kinds.pop(parts, None)
        return "/".join(parts)

    def _add_symlink(self, info: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        _check_symlink(info.name, parts, info.linkname)
        if self._already(info, parts, "symlink"):
            self._skip(parts, "duplicate entry; the first one is kept")
            return
        parent = self._open_dir(parts[:-1], info.name)
        try:
            os.symlink(info.linkname, parts[-1], dir_fd=parent)
            self._kinds[parts] = "symlink"
            ns = _mtime_ns(info)
            if ns is not None:
                os.utime(parts[-1], ns=(ns, ns), dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)
        self.members += 1

    def _add_hardlink(self, info: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        source = _safe_parts(info.linkname, info.name, f"hard link target {_shown(info.linkname)}")
        if self._kinds.get(source) != "file":
            raise UnsafeArchive(f"{_shown(info.name)}: hard link to {_shown(info.linkname)}, "
                                "which is not a regular file extracted before it")
        if self._already(info, parts, "file"):
            self._skip(parts, "duplicate entry; the first one is kept")
            return
        fd = self._create_file(parts, info.name)
        try:
            self._copy(source, fd, info.name)
            self._finish_file(fd, info, parts)
        finally:
            os.close(fd)
        self.members += 1

    def _already(self, info: tarfile.TarInfo, parts: tuple[str, ...], kind: str) -> bool:
        """Whether a `kind` is already at `parts`; any other kind there refuses the archive."""
        existing = self._kinds.get(parts)
        if existing is not None and existing != kind:
            raise UnsafeArchive(f"{_shown(info.name)}: a {kind} where the archive already put a {existing}")
        return existing is not None

    def _skip(self, parts: tuple[str, ...], problem: str) -> None:
        self._incident(Incident(member=_display(parts), problem=problem, action="skipped"))

    def _note_special_bits(self, info: tarfile.TarInfo, parts: tuple[str, ...], mode: int) -> None:
        if info.mode & _SPECIAL_BITS:
            problem = f"setuid/setgid/sticky bits dropped ({info.mode & 0o7777:04o} -> {mode:04o})"
            self._incident(Incident(member=_display(parts), problem=problem, action="mode changed"))

    def _incident(self, incident: Incident) -> None:
        """Kept one by one up to MAX_INCIDENTS, then only counted: an archive of a million
        duplicates must not become a million objects and a million printed lines."""
        if len(self.incidents) < MAX_INCIDENTS:
            self.incidents.append(incident)
        else:
            self.more_incidents += 1

    def all_incidents(self) -> tuple[Incident, ...]:
        if not self.more_incidents:
            return tuple(self.incidents)
        more = Incident(member=f"{self.more_incidents:,} more members",
                        problem="further incidents of the kinds above", action="not listed")
        return (*self.incidents, more)

    def _create_file(self, parts: tuple[str, ...], name: str) -> int:
        parent = self._open_dir(parts[:-1], name)
        try:
            fd = os.open(parts[-1], _FILE_CREATE, 0o600, dir_fd=parent)
        finally:
            os.close(parent)
        self._kinds[parts] = "file"
        return fd

    def _finish_file(self, fd: int, info: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        mode = 0o755 if info.mode & 0o111 else 0o644
        self._note_special_bits(info, parts, mode)
        os.fchmod(fd, mode)
        ns = _mtime_ns(info)
        if ns is not None:
            os.utime(fd, ns=(ns, ns))

    def _write(self, fd: int, chunk: bytes, name: str) -> None:
        if len(chunk) > self._max_bytes - self.bytes_written:
            raise UnsafeArchive(_over_size(name, len(chunk), self._max_bytes))
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        self.bytes_written += len(chunk)

    def _copy(self, source: tuple[str, ...], fd: int, name: str) -> None:
        parent = self._open_dir(source[:-1], name)
        try:
            src = os.open(source[-1], _FILE_OPEN, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            while chunk := os.read(src, _CHUNK):
                self._write(fd, chunk, name)
        finally:
            os.close(src)

    def _open_dir(self, parts: tuple[str, ...], name: str) -> int:
        """A descriptor of directory `parts` (the caller closes it), created with its parents if
        missing; never through a link."""
        chain = self._open_chain
        keep = 0
        while keep < min(len(chain), len(parts)) and chain[keep][0] == parts[: keep + 1]:
            keep += 1
        for _, stale in chain[keep:]:
            os.close(stale)
        del chain[keep:]
        for depth in range(keep + 1, len(parts) + 1):
            parent = chain[-1][1] if chain else self._root_fd
            chain.append((parts[:depth], self._step_into(parent, parts[:depth], name)))
        return os.dup(chain[-1][1] if chain else self._root_fd)

    def _step_into(self, fd: int, here: tuple[str, ...], name: str) -> int:
        """The directory `here` opened from `fd` (its parent)."""
        kind = self._kinds.get(here)
        if kind is None:
            os.mkdir(here[-1], 0o755, dir_fd=fd)
            self._kinds[here] = "directory"
        elif kind != "directory":
            raise UnsafeArchive(f"{_shown(name)}: {_shown('/'.join(here))} is a {kind} in the tree; "
                                "refusing to write through it")
        child = os.open(here[-1], _DIR_OPEN, dir_fd=fd)
        try:
            if kind is None:
                os.fchmod(child, 0o755)  # whatever the umask
        except BaseException:
            os.close(child)
            raise
        return child


_SKIPPED = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}


# Vetting names --------------------------------------------------------------------------------


def _safe_parts(text: str, member: str, what: str) -> tuple[str, ...]:
    """`text` as path components inside the tree; anything that could lead out refuses the archive."""

    def refused(problem: str) -> UnsafeArchive:
        return UnsafeArchive(f"{_shown(member)}: {what} {problem}")

    if _CONTROL.search(text):
        raise refused("contains a control character")
    if text.startswith("/"):
        raise refused("is absolute")
    parts = tuple(part for part in text.split("/") if part not in ("", "."))
    if ".." in parts:
        raise refused("contains '..'")
    if _too_long(text, _PATH_MAX) or any(_too_long(part, _NAME_MAX) for part in parts):
        raise refused("is too long or not encodable")
    return parts


def _check_symlink(member: str, parts: tuple[str, ...], target: str) -> None:
    """Refuse a target that is absolute or could lead out of the tree, even through other links."""

    def refused(problem: str) -> UnsafeArchive:
        return UnsafeArchive(f"{_shown(member)}: symlink to {_shown(target)} {problem}")

    if not target:
        raise refused("(empty)")
    if _CONTROL.search(target):
        raise refused("contains a control character")
    if target.startswith("/"):
        raise refused("is absolute")
    if _too_long(target, _PATH_MAX):
        raise refused("is too long or not encodable")
    steps = [step for step in target.split("/") if step not in ("", ".")]
    climbs = next((i for i, step in enumerate(steps) if step != ".."), len(steps))
    if ".." in steps[climbs:]:
        raise refused("climbs after a name (only leading '../' is allowed)")
    if climbs > len(parts) - 1:
        raise refused("points outside the tree")


def _too_long(text: str, limit: int) -> bool:
    try:
        return len(os.fsencode(text)) > limit
    except UnicodeError:
        return True


def _display(parts: tuple[str, ...]) -> str:
    return "/".join(parts) or "."


def _shown(name: str) -> str:
    return imagetext.shown(name)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _over_size(name: str, size: int, max_bytes: int) -> str:
    return (f"{_shown(name)}: {size:,} more bytes would take the file data past the limit of "
            f"{max_bytes:,} bytes; raise the limit with --max-size")


def _mtime_ns(info: tarfile.TarInfo) -> int | None:
    """The member's time in nanoseconds, or None when it is not a sane time (then left unset)."""
    mtime = info.mtime
    if isinstance(mtime, float):
        if not math.isfinite(mtime):
            return None
        ns = int(mtime * 1e9)
    else:
        ns = mtime * 1_000_000_000
    return ns if -(1 << 62) < ns < (1 << 62) else None


# The target directory -------------------------------------------------------------------------


def _write_stamp(directory: Path, archive: bytes, tree: _Tree) -> None:
    """What a later run needs to reuse the tree: the archive's sha256, and whether the tree holds
    all of it (a salvaged tree does not, and is never reused)."""
    stamp = {"sha256": hashlib.sha256(archive).hexdigest(), "tool": "extract-ikheaders", "members": tree.members,
             "bytes": tree.bytes_written, "complete": tree.lost is None, "tree": tree_digest(directory)}
    (directory / STAMP).write_text(json.dumps(stamp, sort_keys=True) + "\n")


def has_stamp(directory: Path) -> bool:
    """Whether `directory` is a tree this tool unpacked (its stamp is a regular file, not a link)."""
    try:
        return stat.S_ISREG(os.lstat(directory / STAMP).st_mode)
    except OSError:
        return False


def tree_digest(directory: Path) -> str:
    """A digest of what the tree holds, the stamp aside: every entry's path and kind, and a file's
    size, mode and time. A file added, removed, resized or rewritten since the stamp changes it."""
    lines = []
    for top, dirs, files in os.walk(directory):
        dirs.sort()
        rel = os.path.relpath(top, directory)
        for name in sorted(dirs):
            lines.append(f"d {os.path.join(rel, name)}")
        for name in sorted(files):
            if rel == "." and name == STAMP:
                continue
            st = os.lstat(os.path.join(top, name))
            lines.append(f"f {os.path.join(rel, name)} {st.st_size} {stat.S_IMODE(st.st_mode):o} {st.st_mtime_ns}"
                         if stat.S_ISREG(st.st_mode) else f"o {os.path.join(rel, name)} {st.st_mode:o}")
    return hashlib.sha256("\n".join(lines).encode(errors="surrogateescape")).hexdigest()


def read_stamp(directory: Path) -> dict[str, object]:
    """A tree's stamp ({} without one): sha256, members, bytes, complete."""
    try:
        fd = os.open(directory / STAMP, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            stamp = json.loads(f.read(4096))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def untrusted_entry(directory: Path) -> str | None:
    """The first entry of the tree that someone else could have put or changed: not ours, group- or
    world-writable, a symbolic link, or anything but a directory or a regular file; None when every
    entry is ours alone (BCC's CVE-2024-2314 trusted a /tmp/kheaders-* that someone else made)."""
    uid = os.getuid()
    pending = [directory]
    while pending:
        current = pending.pop()
        st = os.lstat(current)
        if st.st_uid != uid or st.st_mode & 0o022:
            return f"{current} (owner {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})"
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(current) as entries:
                pending.extend(Path(entry.path) for entry in entries)
        elif not stat.S_ISREG(st.st_mode):
            return f"{current} (not a directory or regular file)"
    return None


def _check_target(dest: Path, force: bool) -> bool:
    """Whether `dest` holds a tree to replace; refuses a target that cannot or must not be used."""
    if dest.name in ("", ".", ".."):
        raise UsageError(f"{dest}: not usable as an output directory name")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest.parent}: the parent directory of {dest.name} does not exist")
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UsageError(f"{dest}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{dest} is a symbolic link; refusing to unpack through it")
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{dest} exists and is not a directory")
    if _is_empty(dest):
        return False
    if not has_stamp(dest):
        raise UsageError(f"{dest} is not empty and not a tree this tool unpacked (no {STAMP}); "
                         "refusing to replace it" + ("" if force else " (--force replaces only such trees)"))
    if not force:
        raise UsageError(f"{dest} holds an earlier tree; use --force to replace it")
    return True


def _is_empty(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is None
    except OSError as exc:
        raise UsageError(f"{directory}: {exc.strerror}") from None


def _make_temp(dest: Path, role: str) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}.{role}-", dir=dest.parent))
    except OSError as exc:
        raise UsageError(f"cannot create a directory in {dest.parent}: {exc.strerror}") from None


def _move_into_place(tmp: Path, dest: Path, force: bool) -> list[Incident]:
    if not _check_target(dest, force):  # again: the target may have changed while unpacking
        os.rename(tmp, dest)  # replaces an empty directory, fails on a non-empty one
        return []
    old = _make_temp(dest, "old")
    try:
        os.rename(dest, old)
    except BaseException:
        os.rmdir(old)
        raise
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    try:
        shutil.rmtree(old)
    except OSError as exc:
        return [Incident(member=str(old), problem=f"could not remove the replaced tree: {exc}", action="kept")]
    return []


def _discard(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
