"""Extract the kernel headers archive (CONFIG_IKHEADERS) from kernel images, modules and dumps.

    >>> import extract_ikheaders
    >>> found = extract_ikheaders.find("vmlinux")
    >>> found.method, found.release, found.sha256
    >>> extract_ikheaders.extract("vmlinux", "headers/")
"""

from typing import TYPE_CHECKING, Any

from . import lazy
from .errors import Damaged, ExtractError, InputError, NotFound, ToolError, UnsafeArchive, UsageError
from .version import __version__ as __version__

if TYPE_CHECKING:
    from .model import Check as Check
    from .model import Extracted as Extracted
    from .model import Found as Found
    from .model import KernelConfig as KernelConfig
    from .model import Layer as Layer
    from .model import Member as Member
    from .model import Method as Method
    from .pipeline import extract as extract
    from .pipeline import find as find
    from .pipeline import find_config as find_config
    from .pipeline import list_members as list_members
    from .pipeline import read_archive as read_archive

_PIPELINE = ("extract", "find", "find_config", "list_members", "read_archive")
_MODEL = ("Check", "Extracted", "Found", "KernelConfig", "Layer", "Member", "Method")

__all__ = ["Check", "Damaged", "ExtractError", "Extracted", "Found", "InputError", "KernelConfig", "Layer", "Member",
           "Method", "NotFound", "ToolError", "UnsafeArchive", "UsageError", "extract", "find", "find_config",
           "list_members", "read_archive"]


def __getattr__(name: str) -> Any:
    """The pipeline's functions and the model's classes, loaded on first use (lazy.py): `--version`
    and `--help` need neither."""
    if name in _PIPELINE:
        return getattr(lazy.module("extract_ikheaders.pipeline"), name)
    if name in _MODEL:
        return getattr(lazy.module("extract_ikheaders.model"), name)
    raise AttributeError(f"module 'extract_ikheaders' has no attribute {name!r}")
