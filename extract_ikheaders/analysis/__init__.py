"""What the headers are found with: kallsyms (located and decoded, System.map), the kernel's
well-known globals, DWARF types compiled from the headers (in a sandbox), Volatility 3 symbol
tables (ISF), and a drgn program over a dump."""
