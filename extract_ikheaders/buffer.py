"""The one type every parser reads: the input mapped read-only (pipeline.open_input), or bytes
decoded or sliced from it. All three have find() and slicing; none is copied whole on purpose."""

from __future__ import annotations

import mmap

Buffer = bytes | bytearray | mmap.mmap
ByteView = Buffer | memoryview  # what a decoder reads from (a slice of a Buffer without a copy)
