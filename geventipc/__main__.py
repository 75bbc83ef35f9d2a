"""``python -m geventipc``: the same command line as the ``geventipc`` script."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
