"""Where the archive is: symbols first, then the seed's markers, then carving.

- Symbols (Linux 5.2, commit 43d8ce9d65a5 "Provide in-kernel headers to make extending kernel
  easier", and every release since): kernel/kheaders.c `.incbin`s the archive into .rodata
  between `kernel_headers_data` and `kernel_headers_data_end`.
- Markers: the 2019 seed patch bracketed the archive with the ASCII strings IKHD_ST / IKHD_ED,
  like kernel/configs.c's IKCFG_ST / IKCFG_ED.
- Carve: with neither (stripped or raw images, memory), an xz stream whose first tar members
  are ./include/... or ./arch/<arch>/include/...; its exact end comes from the xz index.
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass

from ..buffer import Buffer
from ..elf.reader import CorruptElf, ElfImage
from ..errors import Damaged
from ..model import Method
from . import xzstream

START_SYMBOL = "kernel_headers_data"
END_SYMBOL = "kernel_headers_data_end"
START_MARKER = b"IKHD_ST"
END_MARKER = b"IKHD_ED"


@dataclass(frozen=True)
class Span:
    method: Method
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad span {self.start:#x}..{self.end:#x}")


def by_symbols(elf: ElfImage) -> Span | None:
    """The archive between the two symbols, or None when the image has no such symbols.

    Raises Damaged when the symbols exist but frame something that is not a whole xz stream.
    """
    symbols = elf.find_symbols(START_SYMBOL, END_SYMBOL)
    if START_SYMBOL not in symbols or END_SYMBOL not in symbols:
        return None
    start_sym, end_sym = symbols[START_SYMBOL], symbols[END_SYMBOL]
    if start_sym.shndx != end_sym.shndx:
        raise CorruptElf(f"{START_SYMBOL} and {END_SYMBOL} are in different sections")
    start = elf.symbol_file_offset(start_sym)
    end = elf.symbol_file_offset(end_sym)
    if end < start:
        raise CorruptElf(f"{END_SYMBOL} ({end_sym.value:#x}) lies before {START_SYMBOL} ({start_sym.value:#x})")
    check_whole_stream(elf.buf, start, end, f"{START_SYMBOL}..{END_SYMBOL}")
    return Span(Method.SYMBOLS, start, end)


def by_markers(buf: Buffer, start_at: int = 0, stop: int | None = None) -> Span | None:
    """The xz stream framed by IKHD_ST / IKHD_ED, both markers within buf[start_at:stop]. A marker
    pair around anything else is ignored (a tool that searches for the markers contains the strings too)."""
    start_at, stop = xzstream.bounds(buf, start_at, stop)
    pos = buf.find(START_MARKER, start_at, stop)
    damaged: Damaged | None = None
    while pos != -1:
        start = pos + len(START_MARKER)
        if xzstream.header_flags(buf, start) is not None:
            end_marker = buf.find(END_MARKER, start, stop)
            try:
                end = xzstream.stream_end(buf, start, stop if end_marker == -1 else end_marker).end
            except Damaged as exc:
                damaged = damaged or exc
            else:
                if end + len(END_MARKER) <= stop and bytes(buf[end : end + len(END_MARKER)]) == END_MARKER:
                    return Span(Method.MARKERS, start, end)
        pos = buf.find(START_MARKER, pos + 1, stop)
    if damaged is not None and xzstream.looks_like_headers(buf, damaged.offset or 0):
        raise Damaged(f"the archive after {START_MARKER.decode()} is truncated or corrupt: {damaged}",
                      offset=damaged.offset, data=_salvageable(buf, damaged.offset or 0, stop))
    return None


def carve(buf: Buffer, start: int = 0, end: int | None = None) -> Span | None:
    """The first xz stream in buf[start:end] that holds a kernel headers tar.

    Raises Damaged if such a stream starts but has no valid end (truncated or corrupt).
    """
    for pos in xzstream.stream_headers(buf, start, end):
        if not xzstream.looks_like_headers(buf, pos):
            continue
        try:
            info = xzstream.stream_end(buf, pos, end)
        except Damaged as exc:
            exc.data = _salvageable(buf, pos, end)
            raise
        return Span(Method.CARVE, pos, info.end)
    return None


_MAX_SALVAGE = 256 << 20


def _salvageable(buf: Buffer, start: int, end: int | None) -> bytes:
    """The bytes a damaged stream may still decode from: up to the range's end (bounded)."""
    stop = len(buf) if end is None else min(end, len(buf))
    return bytes(buf[start : min(stop, start + _MAX_SALVAGE)])


def check_whole_stream(buf: Buffer, start: int, end: int, what: str) -> None:
    """The bytes start..end must be exactly one xz stream (padding allowed), else Damaged."""
    if xzstream.header_flags(buf, start) is None:
        raise Damaged(f"{what} at offset {start:#x} does not start with an xz stream header", offset=start)
    try:
        info = xzstream.stream_end(buf, start, end)
    except Damaged as exc:
        exc.data = bytes(buf[start:end])
        raise
    if any(bytes(buf[info.end : end])):
        raise Damaged(f"{what}: the xz stream ends at {info.end:#x}, before {end:#x}", offset=info.end)


class StreamCarver:
    """Carve from data that arrives in chunks (a kernel image being decompressed).

    Keeps only what a live candidate needs plus a short tail for a magic split across chunks.
    A candidate's end is known the moment it arrives, so the producer can stop decompressing the
    rest of the image: with `decode` (the default) the candidate is decoded as it arrives, which
    also verifies it; without, its footer is looked for in each new piece (xz structure only).
    A candidate that looked like the headers but turns out corrupt is remembered: with nothing
    better found, finish() reports it as Damaged.
    """

    _TAIL = 16
    _PROBE = 64 * 1024  # decoded bytes wanted after a magic before judging it

    def __init__(self, decode: bool = True) -> None:
        self.decoded = decode  # whether the archive found was decoded whole (verified) on the way
        self._window = bytearray()
        self._window_start = 0  # offset of _window[0] in the whole decoded stream
        self._live = False  # a candidate starts at _window[0]
        self._decoder: lzma.LZMADecompressor | None = None  # decode: the live candidate's decoder
        self._fed = 0  # bytes of the window already given to the decoder, or searched for a footer
        self._final = False
        self._marker_before = False
        self.found: Span | None = None
        self.archive = b""
        self._damaged: Damaged | None = None

    def feed(self, chunk: bytes) -> bool:
        """Take the next chunk; True once the archive is complete (stop feeding then)."""
        self._window += chunk
        while self.found is None:
            if not self._live and not self._next_candidate():
                return False
            if not self._advance():
                return self.found is not None
        return True

    def finish(self) -> Span | None:
        """No more input: judge magics held back for want of data; report a cut-off archive."""
        self._final = True
        self.feed(b"")
        if self.found is None and self._live:
            at = self._window_start + len(self._window)
            raise Damaged(f"the headers archive at decoded offset {self._window_start:#x} is cut off "
                          f"at {at:#x}", offset=at, data=bytes(self._window))
        if self.found is None and self._damaged is not None:
            raise self._damaged
        return self.found

    def _drop(self, count: int) -> None:
        del self._window[:count]
        self._window_start += count

    def _next_candidate(self) -> bool:
        pos = self._window.find(xzstream.MAGIC)
        while pos != -1:
            if len(self._window) - pos < self._PROBE and not self._final:
                # Judge it when more data has arrived; keep room for a seed marker before it.
                self._drop(max(0, pos - len(START_MARKER)))
                return False
            if xzstream.header_flags(self._window, pos) is not None and xzstream.looks_like_headers(
                    self._window, pos):
                self._marker_before = self._window[max(0, pos - len(START_MARKER)) : pos] == START_MARKER
                self._drop(pos)
                self._live, self._fed = True, 0
                self._decoder = xzstream.decoder_for_archive() if self.decoded else None
                return True
            pos = self._window.find(xzstream.MAGIC, pos + 1)
        self._drop(max(0, len(self._window) - self._TAIL))
        return False

    def _advance(self) -> bool:
        """Take in what has arrived. True: look for another candidate; False: wait for more."""
        if self._decoder is None:
            return self._seek_footer()
        data, self._fed = bytes(self._window[self._fed :]), len(self._window)
        try:
            xzstream.feed_discarding(self._decoder, data)
        except lzma.LZMAError as exc:
            at = self._window_start + self._fed
            return self._reject(f"{xzstream.decode_error(exc)} before {at:#x}: {exc}", at)
        if self._decoder.eof:
            self._complete(len(self._window) - len(self._decoder.unused_data))
        return False

    def _seek_footer(self) -> bool:
        """The candidate's end from its footer and index, searched for in the new data only."""
        info = xzstream.first_footer(self._window, 0, self._fed)
        if info is not None:
            self._complete(info.end)
            return False
        self._fed = max(0, len(self._window) - 1)  # a footer's "YZ" may straddle two pieces
        if len(self._window) > xzstream.MAX_ARCHIVE:
            at = self._window_start + len(self._window)
            return self._reject(f"no footer within {xzstream.MAX_ARCHIVE:,} bytes", at)
        return False

    def _reject(self, problem: str, at: int) -> bool:
        """The live candidate is not a sound archive: remember why and look past its magic."""
        if self._damaged is None:
            self._damaged = Damaged(f"the headers archive at decoded offset {self._window_start:#x} is damaged: "
                                    f"{problem}", offset=at)
        self._live, self._decoder = False, None
        self._drop(1)
        return True

    def _complete(self, end: int) -> None:
        self.archive = bytes(self._window[:end])
        after = self._window[end : end + len(END_MARKER)]
        method = Method.MARKERS if self._marker_before and after == END_MARKER else Method.CARVE
        self.found = Span(method, self._window_start, self._window_start + end)


# The kernel's .config (CONFIG_IKCONFIG): kernel/configs.c keeps a gzip of it between the symbols
# kernel_config_data and kernel_config_data_end, themselves between the markers IKCFG_ST/IKCFG_ED
# (markers since 2.6, symbols since 5.1).
CONFIG_START_SYMBOL = "kernel_config_data"
CONFIG_END_SYMBOL = "kernel_config_data_end"
CONFIG_START_MARKER = b"IKCFG_ST"
CONFIG_END_MARKER = b"IKCFG_ED"
_GZIP_MAGIC = b"\x1f\x8b\x08"
CONFIG_MAX_GZIP = 4 << 20  # a gzipped .config is tens of KiB


def config_by_symbols(elf: ElfImage) -> Span | None:
    symbols = elf.find_symbols(CONFIG_START_SYMBOL, CONFIG_END_SYMBOL)
    if CONFIG_START_SYMBOL not in symbols or CONFIG_END_SYMBOL not in symbols:
        return None
    start = elf.symbol_file_offset(symbols[CONFIG_START_SYMBOL])
    end = elf.symbol_file_offset(symbols[CONFIG_END_SYMBOL])
    if end < start:
        raise CorruptElf(f"{CONFIG_END_SYMBOL} lies before {CONFIG_START_SYMBOL}")
    return Span(Method.SYMBOLS, start, end)


def config_by_markers(buf: Buffer | bytes, start_at: int = 0, stop: int | None = None) -> Span | None:
    """The gzip data between IKCFG_ST and the next IKCFG_ED (stray marker strings are skipped)."""
    start_at, stop = xzstream.bounds(buf, start_at, stop)
    pos = buf.find(CONFIG_START_MARKER, start_at, stop)
    end = -1
    while pos != -1:
        start = pos + len(CONFIG_START_MARKER)
        if end < start:  # one search per end marker, not per start marker: linear in the markers
            end = buf.find(CONFIG_END_MARKER, start, stop)
            if end == -1:
                return None
        if bytes(buf[start : start + 3]) == _GZIP_MAGIC:
            return Span(Method.MARKERS, start, end)
        pos = buf.find(CONFIG_START_MARKER, pos + 1, stop)
    return None


def gunzip_config(data: bytes, offset: int, limit: int = 64 << 20) -> bytes:
    """The .config text from the embedded gzip; Damaged if it does not decode whole."""
    import zlib

    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        text = decoder.decompress(data, limit)
    except zlib.error as exc:
        raise Damaged(f"the embedded .config at offset {offset:#x} is corrupt: {exc}", offset=offset) from None
    if not decoder.eof:
        raise Damaged(f"the embedded .config at offset {offset:#x} is truncated", offset=offset)
    return text


class ConfigScanner:
    """Find IKCFG_ST ... IKCFG_ED in streamed chunks; the gzip between them is small."""

    _MAX = 16 << 20

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # stream offset of _data[0]
        self.found: Span | None = None
        self.gzip = b""

    def feed(self, chunk: bytes) -> bool:
        if self.found is None:
            self._data += chunk
            span = config_by_markers(self._data)
            if span is not None:
                self.gzip = bytes(self._data[span.start : span.end])
                self.found = Span(span.method, self._start + span.start, self._start + span.end)
            else:
                self._keep_tail()
        return self.found is not None

    def _keep_tail(self) -> None:
        pos = self._data.rfind(CONFIG_START_MARKER)
        keep_from = pos if pos != -1 and len(self._data) - pos < self._MAX else len(self._data) - 16
        if keep_from > 0:
            del self._data[:keep_from]
            self._start += keep_from
