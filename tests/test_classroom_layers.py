"""Students' step kernels drive real layers: the recurrent layers of an assignment copy default to the
reference kernel (the loop over the step kernels) for the assigned gru, lstm and rnn exercises.

A copy with gru, lstm and rnn assigned is made once. Unsolved, its layers and a CNN->GRU model raise
the exercise's NotImplementedError; with the instructor's solutions put back into the stripped files,
a small CNN->GRU trains on the synthetic shapes well above chance in about a second, and counting the
calls proves that the copy's step kernels, the students' code, did the work.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigru
from minigru.classroom.exercises import EXERCISES
from minigru.classroom.layers import RECURRENT_FILE, layer_names, student_default_kernels
from minigru.classroom.make import make_assignment
from minigru.nn import _recurrent

LIBRARY = Path(minigru.__file__).resolve().parent
RECURRENT_TEXT = (LIBRARY / RECURRENT_FILE).read_text(encoding="utf-8")
LAYERS = {"gru": "nn.GRU", "lstm": "nn.LSTM", "rnn": "nn.RNN"}


def _defaults(text):
    namespace = {}
    line = next(line for line in text.splitlines() if line.startswith("DEFAULT_KERNELS = "))
    exec(line, namespace)
    return namespace["DEFAULT_KERNELS"]


@settings(max_examples=40, deadline=None)
@given(st.sets(st.sampled_from([e.name for e in EXERCISES])))
def test_exactly_the_assigned_recurrent_exercises_switch_to_the_reference_kernel(names):
    chosen = [e for e in EXERCISES if e.name in names]
    text, switched = student_default_kernels(RECURRENT_TEXT, "minigru/nn/_recurrent.py", chosen)
    expected = {module: "reference" if module in names else "fused" for module in _recurrent.DEFAULT_KERNELS}
    assert _defaults(text) == expected
    assert switched == [m for m in _recurrent.DEFAULT_KERNELS if m in names]
    assert layer_names(switched) == [LAYERS[m] for m in switched]
    # nothing else in the file changes
    assert [a for a in RECURRENT_TEXT.splitlines() if not a.startswith("DEFAULT_KERNELS = ")] == \
           [b for b in text.splitlines() if not b.startswith("DEFAULT_KERNELS = ")]


@pytest.mark.parametrize("text, problem", [
    ("KERNELS = ('fused',)\n", "found 0"),
    ('DEFAULT_KERNELS = {"gru": "fused"}\nDEFAULT_KERNELS = {"gru": "fused"}\n', "found 2"),
    ('DEFAULT_KERNELS = {"gru": FUSED}\n', "literal dict"),
    ('DEFAULT_KERNELS = {"gru": "fast"}\n', "literal dict"),
])
def test_a_file_without_one_literal_default_line_is_refused(text, problem):
    gru = [e for e in EXERCISES if e.name == "gru"]
    with pytest.raises(ValueError, match=r"^minigru/nn/_recurrent.py: .*" + problem):
        student_default_kernels(text, "minigru/nn/_recurrent.py", gru)


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    out = tmp_path_factory.mktemp("layers") / "hw"
    made = make_assignment(out, "gru,lstm,rnn", project_dir=tmp_path_factory.mktemp("empty"))
    return out, made


def _run_in(folder, code):
    """Run ``code`` with ``folder`` first on sys.path (and no PYTHONPATH): the student copy's minigru."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


UNSOLVED = """
import json
import numpy as np
import minigru
from minigru import nn
from minigru.models import CNNGRU

x = np.ones((3, 2, 4))
builders = {"nn.GRU": lambda **k: nn.GRU(4, 3, dtype=np.float64, **k),
            "nn.LSTM": lambda **k: nn.LSTM(4, 3, dtype=np.float64, **k),
            "nn.RNN": lambda **k: nn.RNN(4, 3, dtype=np.float64, **k)}
found = {"file": minigru.__file__}
for name, build in builders.items():
    layer = build()
    found[name] = {"kernel": layer.kernel, "fused_shape": list(build(kernel="fused")(x)[0].shape)}
    try:
        layer(x)
    except NotImplementedError as err:
        found[name]["error"] = str(err)
model = CNNGRU(num_classes=4, image_size=16, widths=(4,), hidden_size=5, rng=0)
try:
    model(np.zeros((2, 3, 16, 16), dtype=np.float32))
except NotImplementedError as err:
    found["cnn-gru"] = str(err)
print(json.dumps(found))
"""


def test_an_unsolved_copy_raises_the_exercise_when_its_layers_run(assignment):
    out, made = assignment
    assert made.layers == ["nn.RNN", "nn.GRU", "nn.LSTM"]
    found = _run_in(out, UNSOLVED)
    assert Path(found["file"]).resolve() == (out / "minigru/__init__.py").resolve()
    for layer, exercise in (("nn.GRU", "gru"), ("nn.LSTM", "lstm"), ("nn.RNN", "rnn")):
        assert found[layer]["kernel"] == "reference"
        assert found[layer]["error"].startswith(f"Exercise {exercise} ({exercise}_step_forward): "), found[layer]
        assert found[layer]["fused_shape"] == [3, 2, 3]            # the library's fused kernels are not stripped
    assert found["cnn-gru"].startswith("Exercise gru (gru_step_forward): ")


def test_the_student_readme_says_which_layers_run_on_the_step_kernels(assignment):
    readme = (assignment[0] / "README.md").read_text()
    assert "- In this copy `nn.RNN`, `nn.GRU` and `nn.LSTM` run on your step kernels by default:" in readme
    assert '`kernel="reference"`' in readme and "`cnn-gru`" in readme
    assert "kernel='reference' by default" in assignment[1].summary()


SOLVED = """
import json
import numpy as np
import minigru
from minigru import nn
from minigru.data import make_shapes
from minigru.functional import gru, lstm, rnn
from minigru.models import CNNGRU
from minigru.optim import Adam

calls = {}
def count(module, name):
    original = getattr(module, name)
    calls[name] = 0
    def counted(*args, **kwargs):
        calls[name] += 1
        return original(*args, **kwargs)
    setattr(module, name, counted)
for module in (gru, lstm, rnn):
    for way in ("forward", "backward"):
        count(module, f"{module.__name__.rsplit('.', 1)[1]}_step_{way}")

found = {"file": minigru.__file__, "agree": {}}
# the other two layers: the default (the students' steps) gives the fused kernels' numbers
x = np.random.default_rng(0).standard_normal((5, 2, 4))
for name, build in (("nn.LSTM", nn.LSTM), ("nn.RNN", nn.RNN)):
    mine, fused = build(4, 3, rng=1, dtype=np.float64), build(4, 3, rng=1, dtype=np.float64, kernel="fused")
    found["agree"][name] = bool(np.allclose(mine(x)[0], fused(x)[0], rtol=1e-10, atol=1e-12))

data = make_shapes(512, image_size=16, seed=0, n_test=200, n_classes=4)
def prepare(images):
    return images.astype(np.float32) / 255.0 - 0.5
images, labels = prepare(data.train_images), data.train_labels
model = CNNGRU(num_classes=4, image_size=16, widths=(8, 16), hidden_size=16, rng=0)
loss_fn, optimizer = nn.CrossEntropyLoss(), Adam(model.parameters(), lr=0.01)
rng, passes = np.random.default_rng(0), 0
for epoch in range(10):
    order = rng.permutation(len(images))
    for start in range(0, len(images), 32):
        batch = order[start:start + 32]
        optimizer.zero_grad()
        loss_fn(model(images[batch]), labels[batch])
        model.backward(loss_fn.backward())
        optimizer.step()
        passes += 1
model.eval()
found["accuracy"] = float((model(prepare(data.test_images)).argmax(1) == data.test_labels).mean())
found.update(kernel=model.gru.kernel, steps=model.sequence_length, passes=passes, calls=calls)
print(json.dumps(found))
"""


def test_a_solved_copy_trains_a_cnn_gru_on_the_students_step_kernels(assignment, tmp_path):
    solved = tmp_path / "solved"
    shutil.copytree(assignment[0], solved)
    for name in ("gru.py", "lstm.py", "rnn.py"):      # the stripped files, with the instructor's solutions
        shutil.copyfile(LIBRARY / "functional" / name, solved / "minigru/functional" / name)
    found = _run_in(solved, SOLVED)
    assert Path(found["file"]).resolve() == (solved / "minigru/__init__.py").resolve()
    assert found["kernel"] == "reference" and found["agree"] == {"nn.LSTM": True, "nn.RNN": True}
    calls, steps, passes = found["calls"], found["steps"], found["passes"]
    # every sequence step of every pass went through the copy's step kernels: forward for the training
    # passes and the evaluation, backward for the training passes
    assert calls["gru_step_forward"] == steps * (passes + 1) and calls["gru_step_backward"] == steps * passes
    assert calls["lstm_step_forward"] == calls["rnn_step_forward"] == 5
    assert found["accuracy"] >= 0.6, found           # 4 classes: chance is 0.25
