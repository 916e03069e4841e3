"""Crash images as physical memory: one reader per dump format (ELF core, kdump-compressed,
flattened, LiME, /proc/kcore), the search for the archive in it, and page-table walks."""
