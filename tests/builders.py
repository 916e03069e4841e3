"""Test-side access to the synthetic input builders kept in fixtures/synthetic.py."""

from synthetic import HEADERS, headers_archive, incbin_object, strip

__all__ = ["HEADERS", "headers_archive", "incbin_object", "strip"]
