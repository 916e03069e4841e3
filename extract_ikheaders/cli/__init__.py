"""The command line: the only code that prints or exits (`extract-ikheaders`, `extract-ikheaders-drgn`,
the man page)."""
