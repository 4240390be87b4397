"""``python -m probe.attribution``: attribution grid (PDF) and deletion/insertion AUCs (JSON).

The command lives in :mod:`probe.attribution.command` (see ``--help``).
"""
import sys

from .command import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
