"""The package's version, in a module of its own so that any module can import it at load time."""

__version__ = "0.1.0"
