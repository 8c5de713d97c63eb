"""Hidden tests: the instructor grades with inputs drawn from a secret seed and reference numbers from the
instructor's own minigru, never with the tests or numbers shipped in the student's grading/ folder.

Each test makes a real assignment (exercise pool, the fastest to grade) and grades copies of it in
subprocesses, as ``python -m minigru.classroom grade`` does.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigru
from minigru.classroom.__main__ import main as classroom_main
from minigru.classroom.make import make_assignment

LIBRARY = Path(minigru.__file__).resolve().parent
SOLUTION = (LIBRARY / "functional/pooling.py").read_text()

# A submission that answers from the shipped reference numbers: it finds the case by the shape of dout.
CHEAT = '''def maxpool2d_backward(dout, cache):
    import pathlib
    shipped = np.load(pathlib.Path(__file__).resolve().parents[2] / "grading/reference/pool.npz")
    for key in shipped.files:
        if key.endswith(".dout") and shipped[key].shape == dout.shape:
            return shipped[key.removesuffix(".dout") + ".dx"].copy()
    raise ValueError("no shipped case has this shape")


def _solution_maxpool2d_backward(dout, cache):'''


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    out = tmp_path_factory.mktemp("hidden") / "hw"
    make_assignment(out, "pool", project_dir=tmp_path_factory.mktemp("no_notebooks"))
    return out


def _submission(assignment, tmp_path, pooling_source):
    out = tmp_path / "submission"
    shutil.copytree(assignment, out)
    (out / "minigru/functional/pooling.py").write_text(pooling_source)
    return out


def _student_grade(folder) -> dict:
    """What ``python grade.py`` in the student's folder reports (the shipped tests and numbers)."""
    done = subprocess.run([sys.executable, "grade.py", "-q", "--json", "student.json"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return json.loads((folder / "student.json").read_text())[0]


def _instructor_grade(folder, tmp_path, *extra) -> dict:
    scores = tmp_path / f"instructor{len(list(tmp_path.glob('instructor*.json')))}.json"
    status = classroom_main(["grade", str(folder), "pool", "-q", "--json", str(scores), *extra])
    assert status in (0, 1)
    return json.loads(scores.read_text())[0]


def test_a_submission_that_returns_the_shipped_reference_numbers_scores_zero(assignment, tmp_path):
    cheat = SOLUTION.replace("def maxpool2d_backward(dout, cache):", CHEAT, 1)
    assert cheat != SOLUTION
    folder = _submission(assignment, tmp_path, cheat)
    assert _student_grade(folder)["score"] == 10          # the shipped tests cannot tell
    hidden = _instructor_grade(folder, tmp_path)
    assert hidden["total"] == 6 and hidden["passed"] == 0 and hidden["score"] == 0
    assert isinstance(hidden["seed"], int)
    # ... while the real solution gets every point from the same hidden tests
    (folder / "minigru/functional/pooling.py").write_text(SOLUTION)
    assert _instructor_grade(folder, tmp_path)["score"] == 10


def test_the_seed_is_secret_and_drawn_at_grading_time(assignment, tmp_path):
    folder = _submission(assignment, tmp_path, SOLUTION)
    seeds = {_instructor_grade(folder, tmp_path)["seed"] for _ in range(2)}
    assert len(seeds) == 2 and 0 not in seeds               # not the seed of the shipped numbers


def test_editing_the_shipped_tests_does_not_change_the_grade(assignment, tmp_path):
    # overlapping windows overwrite instead of adding: the stride-1 case fails, the others pass
    buggy = SOLUTION.replace("        if overlapping:  #", "        if False:  #", 1)
    assert buggy != SOLUTION
    folder = _submission(assignment, tmp_path, buggy)
    before = _instructor_grade(folder, tmp_path, "--seed", "1234")
    assert before["total"] == 6 and 0 < before["passed"] < 6
    grading = folder / "grading"
    (grading / "test_pool.py").write_text("EXERCISE = 'pool'\n\ndef test_free_points():\n    pass\n")
    np.savez(grading / "reference/pool.npz", anything=np.zeros(3))
    spec = json.loads((grading / "assignment.json").read_text())
    spec["exercises"]["pool"]["points"] = 1000
    (grading / "assignment.json").write_text(json.dumps(spec))
    assert _student_grade(folder)["passed"] == 1              # the edits fool the student's own grade.py
    after = _instructor_grade(folder, tmp_path, "--seed", "1234")
    assert {k: after[k] for k in ("passed", "total", "score", "tests")} == \
           {k: before[k] for k in ("passed", "total", "score", "tests")}


def test_the_instructor_grader_needs_the_exercises_and_refuses_the_students_minigru(assignment, tmp_path, capsys):
    folder = _submission(assignment, tmp_path, SOLUTION)
    assert classroom_main(["grade", str(folder)]) == 2
    assert "say which exercises to grade" in capsys.readouterr().err
    assert _instructor_grade(folder, tmp_path, "--assignment", str(assignment))["score"] == 10
    # run from inside the submission, `python -m minigru.classroom` would import the student's copy
    done = subprocess.run([sys.executable, "-m", "minigru.classroom", "grade", ".", "pool"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is the submission's own copy" in done.stderr
