"""`python -m tradeloop.cli`: the same command line as the `tradeloop` entry point."""

import sys

from tradeloop.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
