"""``python -m minigru.cli``: the same as ``python -m minigru``."""
import sys

from . import main

sys.exit(main())
