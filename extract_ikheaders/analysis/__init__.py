"""What the headers are found with: kallsyms (located and decoded, System.map), the kernel's
well-known globals, DWARF types compiled from the headers (in a sandbox), Volatility 3 symbol
tables (ISF), and a drgn program over a dump."""

# The wall-clock limit of one compiler step on an image's headers (--compile-timeout); here, not in
# confined_cc, so that the command line can show it without loading the sandbox.
DEFAULT_COMPILE_SECONDS = 60.0
