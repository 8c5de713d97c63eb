"""Detect a folder named ``minigru`` that hides the minigru package from ``python -m minigru...``.

Run from the folder that *contains* a clone of the repository (itself named
``minigru``), ``python -m`` puts that folder first on the path, and Python
imports the clone's root, which has no ``__init__.py``, as an empty namespace
package ``minigru``. An editable install (``pip install -e``) finds the real
package only after that, so the submodules still load but ``minigru`` itself
has no ``__version__`` and no ``__file__``. The command-line entry points call
:func:`exit_if_shadowed` first, to say so in one line instead of a traceback.
"""
import sys

__all__ = ["exit_if_shadowed"]


def exit_if_shadowed() -> None:
    """Exit with status 2 and a one-line explanation when ``minigru`` was imported as a namespace package."""
    package = sys.modules.get("minigru")
    if package is None or getattr(package, "__file__", None) is not None:
        return
    folder = next(iter(getattr(package, "__path__", [])), "a folder named minigru")
    print(f"error: Python took the folder {folder} for the minigru package, because `python -m` looks in the "
          f"current folder first and this one holds a clone named minigru; run the command from another folder "
          f"(for example: cd {folder})", file=sys.stderr)
    sys.exit(2)
