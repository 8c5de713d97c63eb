"""make-assignment --format nbgrader, through a real nbgrader round trip in a temporary course folder.

generate_assignment -> a solved, an unsolved and a cheating submission in submitted/ -> autograde ->
the scores in nbgrader's gradebook -> generate_feedback. nbgrader runs as its command line, in subprocesses, and
executes the notebooks in Jupyter kernels that import this minigru (about 30 s; marked slow). The other
tests check the notebooks' pieces in-process.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigru
from minigru.classroom.exercises import select
from minigru.classroom.make import make_assignment
from minigru.classroom.markers import find_regions
from minigru.classroom.notebook_checks import parametrizations

REPOSITORY = Path(minigru.__file__).resolve().parent.parent


def _nbgrader(course, *args):
    # the course's kernels must import this minigru, and nbgrader runs `alembic` from the environment's bin/
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _cells(path):
    return json.loads(Path(path).read_text())["cells"]


CHEAT = '''def maxpool2d_backward(dout, cache):
    shipped = np.load("pool_examples.npz")          # the example numbers released with the notebook
    for key in shipped.files:
        if key.endswith(".dout") and shipped[key].shape == dout.shape:
            return shipped[key.removesuffix(".dout") + ".dx"].copy()
    raise ValueError("no example has this shape")'''


def _submit(course, student, solved):
    """A submission made from the released notebook: the solution cells filled in from the source (solved),
    or left as released, with the test cells edited to pass (unsolved: edits must not count), or answered
    from the released example numbers (solved == "cheat")."""
    source = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
              for c in _cells(course / "source/hw1/pool.ipynb") if c["metadata"].get("nbgrader", {}).get("solution")}
    nb = json.loads((course / "release/hw1/pool.ipynb").read_text())
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if solved == "cheat" and meta.get("solution"):
            cell["source"] = CHEAT
        elif solved and meta.get("solution"):
            lines = source[meta["grade_id"]].split("\n")
            cell["source"] = "\n".join(line for line in lines if line.strip() not in ("### BEGIN SOLUTION",
                                                                                         "### END SOLUTION"))
        elif not solved and meta.get("grade"):
            cell["source"] = "print('all tests passed')"
    folder = course / "submitted" / student / "hw1"
    folder.mkdir(parents=True)
    (folder / "pool.ipynb").write_text(json.dumps(nb))
    shutil.copyfile(course / "release/hw1/pool_examples.npz", folder / "pool_examples.npz")


@pytest.mark.slow
def test_nbgrader_round_trip_gives_full_and_zero_scores_and_feedback(tmp_path):
    nbgrader_api = pytest.importorskip("nbgrader.api", reason="nbgrader is in the classroom extra")
    course = tmp_path / "course"
    made = make_assignment(course, "pool", project_dir=tmp_path, fmt="nbgrader", name="hw1")
    assert made.notebooks == {"pool": ["pool.ipynb", "pool_examples.npz"]}
    assert (course / "nbgrader_config.py").exists()
    cells = _cells(course / "source/hw1/pool.ipynb")
    solution = [c for c in cells if c["metadata"].get("nbgrader", {}).get("solution")]
    graded = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade")]
    assert [c["metadata"]["nbgrader"]["grade_id"] for c in solution] == ["maxpool2d_backward"]
    assert len(find_regions("".join(solution[0]["source"]))) == 1
    assert sum(c["metadata"]["nbgrader"]["points"] for c in graded) == select("pool")[0].points
    assert all("### BEGIN HIDDEN TESTS" in "".join(c["source"]) for c in graded)

    _nbgrader(course, "generate_assignment", "hw1")
    assert (course / "release/hw1/pool_examples.npz").exists()
    released = "".join("".join(c["source"]) for c in _cells(course / "release/hw1/pool.ipynb"))
    assert "raise NotImplementedError()" in released and "HIDDEN" not in released and "seed=None" not in released
    assert "### HINT:" in released and "xp.add(target" not in released

    _submit(course, "alice", solved=True)
    _submit(course, "bob", solved=False)
    _submit(course, "carol", solved="cheat")
    _nbgrader(course, "autograde", "hw1")
    with nbgrader_api.Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s: (gradebook.find_submission("hw1", s).score, gradebook.find_submission("hw1", s).max_score)
                  for s in ("alice", "bob", "carol")}
    assert scores == {"alice": (10.0, 10.0), "bob": (0.0, 10.0), "carol": (0.0, 10.0)}
    autograded = "".join(json.dumps(c.get("outputs")) for c in _cells(course / "autograded/bob/hw1/pool.ipynb"))
    assert "NotImplementedError" in autograded and "all tests passed" not in autograded
    # the cheat passes the visible examples and fails where the hidden inputs come in
    cheat = [c for c in _cells(course / "autograded/carol/hw1/pool.ipynb")
             if c["metadata"].get("nbgrader", {}).get("grade")]
    for cell in cheat:
        printed, error = cell["outputs"][0]["text"], cell["outputs"][1]
        assert "all 3 case(s) passed" in "".join(printed) and "3 of 3 case(s) failed" in error["evalue"]

    _nbgrader(course, "generate_feedback", "hw1")
    for student in ("alice", "bob", "carol"):
        page = (course / "feedback" / student / "hw1" / "pool.html").read_text()
        assert "maxpool2d_backward" in page and ("10.0 / 10.0" if student == "alice" else "0.0 / 10.0") in page


def test_parametrizations_expand_every_case():
    from minigru.classroom.grading import conv, pool
    assert [p["case"] for p in parametrizations(pool.test_maxpool2d_backward_reference)] == list(pool.CASES)
    assert parametrizations(conv.test_conv_forward) == [{"kernel": k, "case": c} for k, c in conv.PARAMS]


def test_the_tutorials_go_into_the_nbgrader_source_as_solution_cells(tmp_path):
    preprocessors = pytest.importorskip("nbgrader.preprocessors", reason="nbgrader is in the classroom extra")
    nbformat = pytest.importorskip("nbformat")
    made = make_assignment(tmp_path / "course", "gru", fmt="nbgrader")   # notebooks from the repository
    assert made.notebooks == {"gru": ["gru.ipynb", "gru_examples.npz", "01_gru_from_scratch.ipynb"]}
    nb = nbformat.read(tmp_path / "course/source/gru/01_gru_from_scratch.ipynb", as_version=4)
    solution = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(solution) == 2 and all("### BEGIN SOLUTION" in c.source for c in solution)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    released, _ = preprocessors.ClearSolutions().preprocess(nb, {})           # what generate_assignment does to them
    text = "".join(c.source for c in released.cells)
    assert "BEGIN SOLUTION" not in text and text.count("raise NotImplementedError()") == 2
    assert "### HINT: Name the results r, z, n, hn" in text


def _notebook_namespace(source_dir, exercise, replace=("", "")):
    """Run the setup and solution cells of an exercise notebook (with a change) as Jupyter would."""
    namespace = {"__name__": "__main__"}
    for cell in _cells(source_dir / f"{exercise}.ipynb"):
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and not meta.get("grade"):
            exec("".join(cell["source"]).replace(*replace), namespace)
    return namespace


def test_notebook_checks_pass_a_solution_and_explain_a_wrong_one(tmp_path, monkeypatch, capsys):
    from minigru.classroom.grading import pool
    from minigru.classroom.notebook_checks import CheckFailed, check
    make_assignment(tmp_path / "course", "pool", project_dir=tmp_path, fmt="nbgrader", name="hw")
    source = tmp_path / "course/source/hw"
    monkeypatch.chdir(source)
    tests = [name for name in vars(pool) if name.startswith("test_")]
    namespace = _notebook_namespace(source, "pool")
    for test in tests:
        check("pool", test, namespace, examples="pool_examples.npz")
        check("pool", test, namespace, seed=None)
    assert capsys.readouterr().out.count("all 3 case(s) passed") == 2 * len(tests)
    wrong = _notebook_namespace(source, "pool", ("if overlapping:", "if False:"))
    with pytest.raises(CheckFailed, match=r"1 of 3 case\(s\) failed on new inputs drawn at grading time") as failed:
        check("pool", "test_maxpool2d_backward_gradcheck", wrong, seed=7)
    assert "[3x3_stride1_pad1]: dx differs from the finite-difference gradient" in str(failed.value)
    assert all(len(line) <= 100 for line in str(failed.value).splitlines())
    assert failed.value._render_traceback_()[0].startswith("CheckFailed: test_maxpool2d_backward_gradcheck")
    borrowed = dict(namespace, maxpool2d_backward=minigru.functional.maxpool2d_backward)
    with pytest.raises(CheckFailed, match="must be written in this notebook"):
        check("pool", tests[0], borrowed, examples="pool_examples.npz")


STUDENT_RUN = '''
import json, sys
from minigru.classroom.notebook_checks import check
namespace = {"__name__": "__main__"}
for cell in json.load(open("pool.ipynb"))["cells"]:
    if cell["cell_type"] == "code" and not cell["metadata"].get("nbgrader", {}).get("grade"):
        exec("".join(cell["source"]), namespace)
check("pool", "test_maxpool2d_backward_reference", namespace, examples="pool_examples.npz")
import minigru; print(minigru.__file__)
check("pool", "test_maxpool2d_backward_reference", namespace, seed=None)
'''


def test_students_check_with_a_copy_of_minigru_that_has_no_solutions(tmp_path):
    # the visible checks need only the .npz; the hidden ones say that they need the instructor's minigru
    make_assignment(tmp_path / "library", "pool", project_dir=tmp_path)
    make_assignment(tmp_path / "course", "pool", project_dir=tmp_path, fmt="nbgrader", name="hw")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "library"))
    done = subprocess.run([sys.executable, "-c", STUDENT_RUN], cwd=tmp_path / "course/source/hw", env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    passed, where = done.stdout.splitlines()
    assert passed == "test_maxpool2d_backward_reference: all 3 case(s) passed on the example inputs"
    assert Path(where).resolve() == (tmp_path / "library/minigru/__init__.py").resolve()
    assert "RuntimeError: the hidden tests need the instructor's minigru" in done.stderr


def test_nbgrader_format_options_are_checked(tmp_path, capsys):
    from minigru.classroom.__main__ import main
    course = tmp_path / "course"
    assert main(["make-assignment", "--out", str(tmp_path / "plain"), "--only", "pool", "--name", "hw"]) == 2
    assert "--name is the nbgrader assignment's name" in capsys.readouterr().err
    assert main(["make-assignment", "--format", "nbgrader", "--out", str(course), "--only", "pool",
                 "--name", "../elsewhere"]) == 2
    assert "invalid assignment name '../elsewhere'" in capsys.readouterr().err
    assert not course.exists() and not (tmp_path / "plain").exists()
    assert main(["make-assignment", "--format", "nbgrader", "--out", str(course), "--only", "pool,softmax"]) == 0
    assert sorted(p.name for p in (course / "source/pool-softmax").iterdir()) == [
        "pool.ipynb", "pool_examples.npz", "softmax.ipynb", "softmax_examples.npz"]
    assert main(["make-assignment", "--format", "nbgrader", "--out", str(course), "--only", "pool",
                 "--name", "pool-softmax"]) == 2
    assert "is not empty; pass --force" in capsys.readouterr().err
    (course / "nbgrader_config.py").write_text("c = get_config()  # the teacher's own\n")
    assert main(["make-assignment", "--format", "nbgrader", "--out", str(course), "--only", "pool",
                 "--name", "pool-softmax", "--force"]) == 0
    assert (course / "nbgrader_config.py").read_text() == "c = get_config()  # the teacher's own\n"


@given(points=st.integers(1, 200), tests=st.integers(1, 12))
def test_points_are_shared_in_whole_numbers_that_add_up(points, tests):
    from minigru.classroom.exercises import Exercise
    from minigru.classroom.nbgrader_format import test_points
    shares = test_points(Exercise("x", "X", "", (), points=points), [f"test_{i}" for i in range(tests)])
    assert len(shares) == tests and sum(shares) == points
    assert max(shares) - min(shares) <= 1 and shares == sorted(shares, reverse=True)
