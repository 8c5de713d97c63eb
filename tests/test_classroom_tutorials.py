"""Notebooks 1 and 2 as assignments: their marked from-scratch functions are stripped by make-assignment
(the nbgrader side is in test_classroom_nbgrader.py; that they still run with the solutions, in
test_notebooks.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

import minigru
from minigru.classroom.make import make_assignment
from minigru.classroom.markers import notebook_regions

REPOSITORY = Path(minigru.__file__).resolve().parent.parent


def test_tutorials_one_and_two_are_assignments(tmp_path):
    made = make_assignment(tmp_path / "hw", "gru,conv")          # notebooks from the repository
    assert made.notebooks == {"gru": ["notebooks/01_gru_from_scratch.ipynb"],
                              "conv": ["notebooks/02_convolution_from_scratch.ipynb"]}
    expected = {"01_gru_from_scratch.ipynb": ["gru_step", "gru_step_back"],
                "02_convolution_from_scratch.ipynb": ["conv_naive", "conv_forward", "conv_backward",
                                                      "maxpool_backward"]}
    for name, functions in expected.items():
        original = json.loads((REPOSITORY / "notebooks" / name).read_text())
        assert [r.function for r in notebook_regions(original, name)] == functions
        nb = json.loads((tmp_path / "hw/notebooks" / name).read_text())
        code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any("### BEGIN SOLUTION" in cell for cell in code)
        assert sum(cell.count("raise NotImplementedError('Exercise ") for cell in code) == len(functions)
        for cell in code:                                         # every cell still compiles
            compile("\n".join(line for line in cell.splitlines() if not line.startswith("%")), name, "exec")
    # the stripped gru_step raises with its first hint, where the student writes the code
    nb = json.loads((tmp_path / "hw/notebooks/01_gru_from_scratch.ipynb").read_text())
    cell = next("".join(c["source"]) for c in nb["cells"] if "def gru_step(" in "".join(c["source"]))
    namespace = {}
    exec("import numpy as np\n" + cell, namespace)
    with pytest.raises(NotImplementedError, match=r"^Exercise gru \(gru_step\): a_x = x W_ih\^T"):
        namespace["gru_step"](*[np.ones(s) for s in ((1, 2), (1, 2), (6, 2), (6, 2), (6,), (6,))])
