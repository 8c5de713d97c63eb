"""`python -m minigru ...` run from the folder that contains a clone named `minigru`.

There, Python imports the clone's root (no __init__.py) as a namespace package `minigru`, and an
editable install's finder, which setuptools appends to sys.meta_path, supplies the submodules only.
The subprocess below sets up exactly that: the current folder first on the path, holding a clone
folder, and a finder like the editable one for the real package. The commands must say what happened
in one line, without a traceback.
"""
import subprocess
import sys
from pathlib import Path

import pytest

import minigru

REPOSITORY = Path(minigru.__file__).resolve().parent.parent

RUN_LIKE_AN_EDITABLE_INSTALL = f'''
import importlib.machinery, os, runpy, sys
class EditableFinder:   # what `pip install -e` appends to sys.meta_path, after the path finder
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] != "minigru":
            return None
        parent = os.path.join({str(REPOSITORY)!r}, *name.split(".")[:-1])
        return importlib.machinery.PathFinder.find_spec(name, [parent])
sys.meta_path.append(EditableFinder)
sys.path.insert(0, os.getcwd())   # as `python -m` does
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
'''


def _run(cwd, *argv):
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", RUN_LIKE_AN_EDITABLE_INSTALL, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [("minigru.classroom", "list"), ("minigru", "models")])
def test_a_clone_folder_that_shadows_the_package_is_explained_in_one_line(tmp_path, argv):
    clone = tmp_path / "minigru"
    (clone / "docs").mkdir(parents=True)       # a clone's root: no __init__.py
    (clone / "README.md").write_text("# minigru\n")
    done = _run(tmp_path, *argv)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: Python took the folder {clone} for the minigru package")
    assert "run the command from another folder" in done.stderr


def test_the_same_commands_work_from_any_other_folder(tmp_path):
    done = _run(tmp_path, "minigru.classroom", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gru ")
