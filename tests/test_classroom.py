"""minigru.classroom: marker parsing and stripping, the exercise registry, make-assignment and the grader.

The end-to-end tests make a real assignment from the library (exercises gru and
pool stripped) in a temporary folder and grade it in subprocesses: the stripped
exercises must fail, every other one pass, and putting the solution back must
make them pass. Grading uses tiny shapes, so each run takes about a second.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import minigru
from minigru.classroom import grade as grader
from minigru.classroom.__main__ import main as classroom_main
from minigru.classroom.exercises import (EXERCISES, Exercise, exercise_regions, scan_package,
                                         self_containment_problems, unassigned_regions)
from minigru.classroom.make import make_assignment
from minigru.classroom.markers import (MarkerError, find_regions, notebook_regions, strip_notebook, strip_source,
                                       undeclared_names)

LIBRARY = Path(minigru.__file__).resolve().parent

SOURCE = '''import math


def area(r):
    """Area of a circle."""
    scale = 1.0
    ### HINT: area = pi r^2. Name the result result.
    ### HINT: math.pi is there.
    ### BEGIN SOLUTION
    result = math.pi * r * r
    ### END SOLUTION
    return scale * result


class Shape:
    def double(self, x):
        if x is not None:
            ### BEGIN SOLUTION
            y = 2 * x
            ### END SOLUTION
            return y
        return None
'''


def _run(source):
    namespace = {}
    exec(compile(source, "<test>", "exec"), namespace)
    return namespace


# ------------------------------------------------------------------ markers
def test_find_regions_reads_lines_hints_and_functions():
    first, second = find_regions(SOURCE, "demo.py")
    assert (first.begin, first.end, first.indent, first.function) == (9, 11, "    ", "area")
    assert first.hints == ("area = pi r^2. Name the result result.", "math.pi is there.")
    assert first.hint_begin == 7 and first.location == "demo.py:9"
    assert (second.begin, second.end, second.indent, second.function) == (18, 20, " " * 12, "Shape.double")
    assert second.hints == () and second.hint_begin is None


def test_strip_replaces_selected_regions_and_keeps_the_others():
    new, stripped = strip_source(SOURCE, "demo.py", lambda r: "circles" if r.function == "area" else None)
    lines = new.splitlines()
    assert [(r.function, ex, line) for r, ex, line in stripped] == [("area", "circles", 9)]
    assert lines[6:9] == [
        "    ### HINT: area = pi r^2. Name the result result.", "    ### HINT: math.pi is there.",
        "    raise NotImplementedError('Exercise circles (area): area = pi r^2. Name the result result.')"]
    assert "math.pi * r * r" not in new and len(lines) == len(SOURCE.splitlines()) - 2
    namespace = _run(new)
    with pytest.raises(NotImplementedError, match=r"^Exercise circles \(area\): area = pi r\^2"):
        namespace["area"](2.0)
    assert namespace["Shape"]().double(3) == 6          # the region that was not selected still works


def test_strip_without_hint_and_in_a_nested_block():
    new, stripped = strip_source(SOURCE, "demo.py", lambda r: "shapes" if r.function == "Shape.double" else None)
    assert stripped[0][2] == 18
    assert new.splitlines()[17] == " " * 12 + ("raise NotImplementedError('Exercise shapes (Shape.double): write the "
                                                "code that was removed here')")
    namespace = _run(new)
    with pytest.raises(NotImplementedError):
        namespace["Shape"]().double(3)
    assert namespace["Shape"]().double(None) is None
    assert namespace["area"](1.0) == pytest.approx(3.141592653589793)


def test_strip_keeps_windows_line_endings_and_quotes_safely():
    source = ('def f():\r\n    ### HINT: say "it\'s" here\r\n    ### BEGIN SOLUTION\r\n    return 1\r\n'
              '    ### END SOLUTION\r\n')
    new, _ = strip_source(source, "crlf.py", lambda r: "quotes")
    assert new.endswith("\r\n") and new.count("\r\n") == 3
    with pytest.raises(NotImplementedError, match="it's\" here"):
        _run(new)["f"]()
    # a form feed is no line break for Python, so it must not shift the line numbers
    region, = find_regions("x = 1  # \x0c page\n" + source, "ff.py")
    assert (region.begin, region.function) == (4, "f")


def test_markers_are_comments_so_the_marked_library_compiles_to_the_same_code():
    # Deleting every marker line must not change the syntax tree of any marked kernel file.
    scan = scan_package(LIBRARY)
    marked = {relative: text for relative, (text, regions) in scan.files.items() if regions}
    assert len(marked) >= 7
    for relative, text in marked.items():
        without = "\n".join(line for line in text.splitlines() if not line.strip().startswith("### "))
        assert ast.dump(ast.parse(text)) == ast.dump(ast.parse(without)), relative


BAD = {
    "nested": ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION\n", 3,
               "cannot nest"),
    "unclosed": ("def f():\n    ### BEGIN SOLUTION\n    x = 1\n", 2, "no matching ### END SOLUTION"),
    "end_without_begin": ("def f():\n    x = 1\n    ### END SOLUTION\n", 3, "without a BEGIN"),
    "end_indent": ("def f():\n    ### BEGIN SOLUTION\n    x = 1\n  ### END SOLUTION\n", 4, "mismatched indentation"),
    "dedented_body": ("def f():\n    if 1:\n        ### BEGIN SOLUTION\n        x = 1\n    y = 2\n"
                      "        ### END SOLUTION\n", 5, "indented less"),
    "typo_marker": ("def f():\n    ### BEGIN SOLUTION:\n    x = 1\n    ### END SOLUTION\n", 2, "malformed marker"),
    "two_hashes": ("def f():\n    ## BEGIN SOLUTION\n    x = 1\n", 2, "write exactly '### BEGIN SOLUTION'"),
    "stray_hint": ("def f():\n    ### HINT: add one\n    x = 1\n", 2, "not directly above"),
    "hint_inside": ("def f():\n    ### BEGIN SOLUTION\n    ### HINT: no\n    x = 1\n    ### END SOLUTION\n", 3,
                    "inside the solution region"),
    "hint_indent": ("def f():\n  ### HINT: h\n    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION\n", 2,
                    "indented 2 columns"),
    "empty": ("def f():\n    ### BEGIN SOLUTION\n\n    ### END SOLUTION\n", 2, "empty solution region"),
}


@pytest.mark.parametrize("name", BAD)
def test_malformed_markers_name_file_and_line(name):
    source, line, problem = BAD[name]
    with pytest.raises(MarkerError, match=problem) as caught:
        find_regions(source, "pkg/bad.py")
    assert str(caught.value).startswith(f"pkg/bad.py:{line}: ")
    assert caught.value.line == line


def test_undeclared_names_flags_a_region_that_is_not_self_contained():
    source = ("def f(x):\n    ### HINT: name the result y\n    ### BEGIN SOLUTION\n    t = x + 1\n    y = t * 2\n"
              "    ### END SOLUTION\n    return y + t\n")
    region, = find_regions(source, "f.py")
    assert undeclared_names(source, region) == ["t"]
    region, = find_regions(source.replace("name the result y", "name the results y and t"), "f.py")
    assert undeclared_names(source, region) == []


# ---------------------------------------------------------------- notebooks
def _notebook(cells):
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}


def _code(source, outputs=()):
    return {"cell_type": "code", "id": f"c{abs(hash(source)) % 10**6}", "metadata": {}, "execution_count": 3,
            "outputs": list(outputs), "source": source.splitlines(keepends=True)}


NOTEBOOK_CELLS = [
    {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": ["# Gates\n", "### BEGIN SOLUTION in prose\n"]},
    _code("import numpy as np\n%matplotlib inline\n### HINT: sigmoid of a\n### BEGIN SOLUTION\n"
          "r = 1 / (1 + np.exp(-a))\n### END SOLUTION\nprint(r)",
          [{"output_type": "stream", "name": "stdout", "text": ["0.73\n"]}]),
    _code("print('no markers')", [{"output_type": "stream", "name": "stdout", "text": ["no markers\n"]}]),
]


def test_notebook_regions_are_stripped_and_outputs_cleared():
    nb = _notebook(NOTEBOOK_CELLS)
    region, = notebook_regions(nb, "notebooks/gates.ipynb")
    assert (region.cell, region.begin, region.hints) == (1, 4, ("sigmoid of a",))
    assert region.location == "notebooks/gates.ipynb cell 1, line 4"
    new, stripped = strip_notebook(nb, "notebooks/gates.ipynb", "gru")
    assert [(r.cell, line) for r, _, line in stripped] == [(1, 4)]
    code = "".join(new["cells"][1]["source"])
    assert code == ("import numpy as np\n%matplotlib inline\n### HINT: sigmoid of a\n"
                    "raise NotImplementedError('Exercise gru: sigmoid of a')\nprint(r)")
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in new["cells"] if c["cell_type"] == "code")
    assert new["cells"][0] == nb["cells"][0]             # markdown untouched
    assert nb["cells"][1]["outputs"]                     # the original is not modified
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.from_dict(new))


# ------------------------------------------------------- package discovery
def _fixture_package(root: Path) -> Path:
    package = root / "pkg"
    (package / "functional").mkdir(parents=True)
    (package / "classroom").mkdir()
    (package / "__init__.py").write_text("")
    (package / "functional" / "demo.py").write_text(SOURCE)
    # the classroom package talks about markers in its own text; it is never scanned
    (package / "classroom" / "doc.py").write_text('"""\n### BEGIN SOLUTION\n"""\n')
    return package


def test_scan_assigns_regions_to_exercises_and_reports_the_rest(tmp_path):
    scan = scan_package(_fixture_package(tmp_path))
    assert list(scan.files) == ["__init__.py", "functional/demo.py"]
    functions = (("functional/demo.py", "area"), ("functional/demo.py", "volume"), ("functional/gone.py", "f"))
    exercise = Exercise("circles", "Circles", "Area.", functions)
    found, missing = exercise_regions(exercise, scan)
    assert [(rel, r.function, r.begin) for rel, r in found] == [("functional/demo.py", "area", 9)]
    assert missing == ["pkg/functional/demo.py: volume has no ### BEGIN SOLUTION region",
                       "pkg/functional/gone.py does not exist (expected f with a solution region)"]
    assert [r.function for r in unassigned_regions(scan, (exercise,))] == ["Shape.double"]


def test_the_library_registry_matches_the_marked_kernels():
    scan = scan_package(LIBRARY)
    for exercise in EXERCISES:
        found, missing = exercise_regions(exercise, scan)
        assert found and not missing, (exercise.name, missing)
    assert unassigned_regions(scan) == []
    assert self_containment_problems(scan) == []


# ------------------------------------------------------- make and grade
def _grade(folder, *names, **kwargs):
    return {r.name: r for r in grader.grade(folder, list(names) or None, **kwargs)}


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    """An assignment with gru and pool stripped (made once; tests that change it work on a copy)."""
    project = tmp_path_factory.mktemp("project")
    (project / "notebooks").mkdir()
    for name, cells in (("gru_gates.ipynb", NOTEBOOK_CELLS), ("gru_plain.ipynb", NOTEBOOK_CELLS[2:]),
                        ("conv_intro.ipynb", NOTEBOOK_CELLS)):
        (project / "notebooks" / name).write_text(json.dumps(_notebook(cells)))
    out = tmp_path_factory.mktemp("hw") / "hw1"
    made = make_assignment(out, "gru,pool", project_dir=project)
    return out, made


def test_make_assignment_writes_the_student_copy(assignment):
    out, made = assignment
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "grade.py", "grading", "minigru", "notebooks",
                                                      "pyproject.toml"]
    gru = (out / "minigru/functional/gru.py").read_text()
    assert "raise NotImplementedError('Exercise gru (gru_step_forward): r = sigmoid(" in gru
    assert "### HINT: Name the results r, z, hidden_n (reset_after only), n, h_next." in gru
    assert "### BEGIN SOLUTION" not in gru and "r = sigmoid(x @ w_ir.T" not in gru
    assert "def gru_forward(" in gru                                      # the rest of the file is intact
    for kept in ("conv.py", "lstm.py", "loss.py"):                        # not selected: identical to the library
        assert (out / "minigru/functional" / kept).read_bytes() == (LIBRARY / "functional" / kept).read_bytes()
    assert [e.name for e in made.exercises] == ["gru", "pool"]
    assert [(f, fn) for f, _, fn in made.stripped["gru"]] == [("minigru/functional/gru.py", "gru_step_forward"),
                                                              ("minigru/functional/gru.py", "gru_step_backward")]
    readme = (out / "README.md").read_text()
    for _, line, function in made.stripped["gru"] + made.stripped["pool"]:
        assert f"line {line}, in `{function}`" in readme
        assert (out / "minigru/functional").exists()
    assert "python grade.py" in readme
    spec = json.loads((out / "grading/assignment.json").read_text())
    assert spec["assigned"] == ["gru", "pool"] and spec["exercises"]["gru"]["points"] == 20


def test_make_assignment_strips_only_the_marked_notebooks_of_selected_exercises(assignment):
    out, made = assignment
    assert made.notebooks == {"gru": ["notebooks/gru_gates.ipynb"]}     # no markers: plain; conv: not selected
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == ["gru_gates.ipynb"]
    nb = json.loads((out / "notebooks/gru_gates.ipynb").read_text())
    assert "raise NotImplementedError('Exercise gru: sigmoid of a')" in "".join(nb["cells"][1]["source"])
    assert "### BEGIN SOLUTION" not in "".join(nb["cells"][1]["source"])


def test_student_copy_imports_and_its_stripped_kernels_raise(assignment):
    out, _ = assignment
    code = ("import numpy as np, minigru; print(minigru.__file__)\n"
            "from minigru import functional as F\n"
            "x = np.ones((1, 1, 3, 3)); w = np.ones((1, 1, 2, 2))\n"
            "print(float(F.conv2d_forward(x, w, None)[0].sum()))\n"
            "try:\n    F.gru_step_forward(np.ones((1, 2)), np.ones((1, 2)), np.ones((6, 2)), np.ones((6, 2)),"
            " None, None)\n"
            "except NotImplementedError as err:\n    print(err)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    where, conv_sum, message = done.stdout.splitlines()[:3]
    assert Path(where).resolve() == (out / "minigru" / "__init__.py").resolve()
    assert float(conv_sum) == 16.0
    assert message.startswith("Exercise gru (gru_step_forward): ")


def test_grader_fails_exactly_the_stripped_exercises(assignment):
    out, _ = assignment
    results = _grade(out, all_exercises=True)
    assert list(results) == [e.name for e in EXERCISES]
    for name, result in results.items():
        assert result.error is None and result.total >= 6, (name, result.output)
        if name in ("gru", "pool"):
            assert result.passed == 0 and result.score == 0.0
            assert result.not_implemented()
        else:
            assert result.passed == result.total, (name, result.outcomes)
            assert result.worst("gradcheck") <= 1e-6 and result.worst("reference") <= 1e-7
        assert result.imported_from == str((out / "minigru" / "__init__.py").resolve())
    assert list(_grade(out)) == ["gru", "pool"]                          # by default, only what was assigned
    table = grader.format_report(list(results.values()), out)
    assert "gru             0/9      0.0 / 20" in table and "not implemented: gru_step_forward" in table


def test_every_exercise_fails_when_stripped(tmp_path):
    # each exercise's tests really run its marked code: with every region stripped, nothing passes
    out = tmp_path / "all"
    made = make_assignment(out)
    assert sorted(made.stripped) == sorted(e.name for e in EXERCISES)
    results = _grade(out)
    assert list(results) == [e.name for e in EXERCISES]
    for name, result in results.items():
        assert result.total >= 6 and result.passed == 0, (name, result.outcomes)
        assert result.not_implemented(), name


@pytest.fixture
def student_copy(assignment, tmp_path):
    out = tmp_path / "submission"
    shutil.copytree(assignment[0], out)
    return out


def test_putting_the_solution_back_passes(student_copy):
    for name in ("gru.py", "pooling.py"):
        shutil.copyfile(LIBRARY / "functional" / name, student_copy / "minigru/functional" / name)
    done = subprocess.run([sys.executable, "grade.py", "--json", "scores.json"], cwd=student_copy,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "total         15/15     30.0 / 30" in done.stdout
    scores = json.loads((student_copy / "scores.json").read_text())
    assert [(s["exercise"], s["passed"], s["status"]) for s in scores] == [("gru", 9, "ok"), ("pool", 6, "ok")]


def test_a_wrong_solution_fails_with_the_tensor_and_its_error(student_copy):
    target = student_copy / "minigru/functional/gru.py"
    solution = (LIBRARY / "functional/gru.py").read_text()
    wrong = solution.replace("dh_prev += da_h @ weight_hh", "dh_prev = da_h @ weight_hh")   # drops dh_next * z
    assert wrong != solution
    target.write_text(wrong)
    result = _grade(student_copy, "gru")["gru"]
    failed = {test: message for test, (outcome, message) in result.outcomes.items() if outcome == "failed"}
    assert set(failed) == {"test_gru.py::test_gru_step_backward_gradcheck[reset_after]",
                           "test_gru.py::test_gru_step_backward_gradcheck[no_bias]",
                           "test_gru.py::test_gru_step_backward_reference[reset_after]",
                           "test_gru.py::test_gru_step_backward_reference[no_bias]"}
    assert "dh_prev differs from the finite-difference gradient" in failed[
        "test_gru.py::test_gru_step_backward_gradcheck[reset_after]"]
    assert result.worst("gradcheck") > 1e-2 and result.passed == 5


def test_a_package_that_does_not_import_or_a_kernel_that_hangs_is_reported(student_copy):
    pooling = student_copy / "minigru/functional/pooling.py"
    solution = (LIBRARY / "functional/pooling.py").read_text()
    pooling.write_text(solution.replace("    argmax, x_shape, g = cache\n", "    argmax, x_shape, g = cache\n"
                                        "    while True:\n        pass\n", 1))
    result = _grade(student_copy, "pool", timeout=2)["pool"]
    assert result.error == "stopped after 2 s (an endless loop?)" and result.passed == 0 and result.total == 6
    pooling.write_text(solution.replace("def maxpool2d_backward(dout, cache):", "def maxpool2d_backward(dout, cache)"))
    result = _grade(student_copy, "pool")["pool"]
    assert result.passed == 0 and result.total == 6
    assert grader._status(result).startswith("minigru package does not import: SyntaxError")


def test_grading_tests_refuse_an_installed_minigru(assignment):
    out, _ = assignment
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIGRU_STUDENT_ROOT")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(out / "grading/test_pool.py")]
    done = subprocess.run(command, cwd=LIBRARY.parent, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "not from the assignment folder" in done.stdout


def test_instructor_grading_ignores_an_edited_grading_folder(student_copy):
    (student_copy / "grading/test_pool.py").write_text("EXERCISE = 'pool'\n\ndef test_free_points():\n    pass\n")
    assert _grade(student_copy, "pool")["pool"].passed == 1
    assert classroom_main(["grade", str(student_copy), "pool", "-q"]) == 1


def test_make_assignment_without_pytest_names_the_classroom_extra(tmp_path):
    # None in sys.modules makes `import pytest` raise ImportError, as when pytest is not installed
    code = ("import sys; sys.modules['pytest'] = None\n"
            "from minigru.classroom.__main__ import main\n"
            f"sys.exit(main(['make-assignment', '--out', {str(tmp_path / 'hw')!r}, '--only', 'pool']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: make-assignment needs pytest") and "minigru[classroom]" in done.stderr
    assert not (tmp_path / "hw").exists()


def test_only_and_output_folder_rules(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown exercise.*nope; choose from gru, lstm"):
        make_assignment(tmp_path / "a", "gru,nope")
    out = tmp_path / "b"
    make_assignment(out, "batchnorm")
    bn = (out / "minigru/functional/batchnorm.py").read_text()
    assert "Exercise batchnorm (batchnorm_backward)" in bn
    assert (out / "minigru/functional/gru.py").read_bytes() == (LIBRARY / "functional/gru.py").read_bytes()
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty; pass --force"):
        make_assignment(out, "softmax")
    assert classroom_main(["make-assignment", "--out", str(out), "--only", "softmax", "--force"]) == 0
    assert "Exercise softmax (cross_entropy_forward)" in (out / "minigru/functional/loss.py").read_text()
    assert "NotImplementedError" not in (out / "minigru/functional/batchnorm.py").read_text()
    assert (out / "my_notes.txt").read_text() == "mine"                  # --force replaces only what it wrote
    assert json.loads((out / "grading/assignment.json").read_text())["assigned"] == ["softmax"]
    for inside_library in (LIBRARY.parent, LIBRARY / "sub"):
        with pytest.raises(ValueError, match="overlaps the library"):
            make_assignment(inside_library, "gru", force=True)
    assert classroom_main(["make-assignment", "--out", str(tmp_path / "c"), "--only", "pool,"]) == 0
    assert classroom_main(["make-assignment", "--out", str(tmp_path / "d"), "--only", "bogus"]) == 2
    assert "unknown exercise" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]      # nothing written anywhere else


def test_list_command_shows_every_exercise(capsys):
    assert classroom_main(["list"]) == 0
    printed = capsys.readouterr().out
    for exercise in EXERCISES:
        assert printed.count(f"\n{exercise.name} ") + printed.startswith(exercise.name + " ") == 1
    assert "minigru/functional/gru.py:" in printed and "Problems" not in printed


def test_the_copys_gru_runs_the_students_step_kernels_and_the_lstm_stays_fused(assignment):
    # gru assigned, lstm not: nn.GRU defaults to the reference loop over the (stripped) step kernels
    out, made = assignment
    readme = (out / "README.md").read_text()
    assert "- In this copy `nn.GRU` runs on your step kernels by default:" in readme and "nn.LSTM" not in readme
    assert made.layers == ["nn.GRU"]
    code = ("import numpy as np\nfrom minigru import nn\n"
            "print(nn.LSTM(2, 3).kernel, nn.GRU(2, 3, kernel='fused', dtype=np.float64)(np.ones((4, 1, 2)))[0].shape)\n"
            "nn.GRU(2, 3, dtype=np.float64)(np.ones((4, 1, 2)))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout == "fused (4, 1, 3)\n"             # the fused kernel is the library's
    assert done.stderr.splitlines()[-1].startswith("NotImplementedError: Exercise gru (gru_step_forward): ")
