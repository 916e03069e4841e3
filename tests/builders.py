"""Test-side access to the synthetic input builders kept in fixtures/synthetic.py."""

from synthetic import HEADERS, NATIVE, TOOLCHAINS, Toolchain, headers_archive, incbin_object, strip

__all__ = ["HEADERS", "NATIVE", "TOOLCHAINS", "Toolchain", "headers_archive", "incbin_object", "strip"]
