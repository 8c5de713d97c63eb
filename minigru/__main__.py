"""``python -m minigru``: the command line of :mod:`minigru.cli`."""
import sys

from .cli import main

sys.exit(main())
