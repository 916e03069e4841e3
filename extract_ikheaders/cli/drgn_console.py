"""`python -m extract_ikheaders.cli.drgn_console DUMP`: the drgn session, as the installed
`extract-ikheaders-drgn` command runs it."""

from .main import drgn_main

if __name__ == "__main__":
    drgn_main()
