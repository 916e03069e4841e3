"""Extract the kernel headers archive (CONFIG_IKHEADERS) from kernel images, modules and dumps.

    >>> import extract_ikheaders
    >>> found = extract_ikheaders.find("vmlinux")
    >>> found.method, found.release, found.sha256
    >>> extract_ikheaders.extract("vmlinux", "headers/")
"""

from .errors import Damaged, ExtractError, InputError, NotFound, UnsafeArchive, UsageError
from .model import Extracted, Found, KernelConfig, Layer, Member, Method
from .pipeline import extract, find, find_config, list_members, read_archive
from .version import __version__ as __version__

__all__ = ["Damaged", "ExtractError", "Extracted", "Found", "InputError", "KernelConfig", "Layer", "Member", "Method",
           "NotFound", "UnsafeArchive", "UsageError", "extract", "find", "find_config", "list_members", "read_archive"]
