"""``python -m minigru``: the command line of :mod:`minigru.cli`."""
import sys

from ._shadow import exit_if_shadowed

exit_if_shadowed()   # before minigru.cli, which needs the real package
from .cli import main  # noqa: E402

sys.exit(main())
