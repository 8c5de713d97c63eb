"""The exercise registry, and discovery of the marked regions that belong to each exercise.

An exercise names the functions whose ``### BEGIN SOLUTION`` regions students
write, the notebooks that go with it (glob patterns; a notebook is included
when it exists and carries markers) and its grading tests, the module
``minigru/classroom/grading/<name>.py``. The regions themselves are found by
parsing the sources (:mod:`minigru.classroom.markers`), so editing a kernel's
markers needs no change here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .markers import MarkerError, Region, find_regions, notebook_regions, read_notebook, undeclared_names

__all__ = ["Exercise", "EXERCISES", "select", "PackageScan", "scan_package", "exercise_regions",
           "exercise_notebooks", "unassigned_regions", "self_containment_problems", "check_registry", "MarkerError"]


@dataclass(frozen=True)
class Exercise:
    """One named exercise. ``functions`` are (file relative to the package, function name) pairs."""
    name: str
    title: str
    summary: str
    functions: tuple
    notebooks: tuple = ()
    points: int = 10

    @property
    def grading_module(self) -> str:
        """Module of :mod:`minigru.classroom.grading` holding this exercise's tests."""
        return self.name


EXERCISES = (
    Exercise("gru", "GRU step, forward and backward",
             "Compute the reset and update gates, the candidate state and the next hidden state of one GRU step "
             "(both of PyTorch's reset_after convention and Cho et al.'s), then backpropagate through it.",
             (("functional/gru.py", "gru_step_forward"), ("functional/gru.py", "gru_step_backward")),
             ("notebooks/*gru*.ipynb",), points=20),
    Exercise("lstm", "LSTM step, forward and backward",
             "Compute the four gates, the next cell state and the next hidden state of one LSTM step, then "
             "backpropagate through it.",
             (("functional/lstm.py", "lstm_step_forward"), ("functional/lstm.py", "lstm_step_backward")),
             ("notebooks/*lstm*.ipynb",), points=15),
    Exercise("rnn", "Vanilla RNN step, forward and backward",
             "One step of an Elman RNN with a tanh or ReLU nonlinearity, and its backward pass.",
             (("functional/rnn.py", "rnn_step_forward"), ("functional/rnn.py", "rnn_step_backward")),
             ("notebooks/*vanilla_rnn*.ipynb",), points=10),
    Exercise("conv", "Convolution, forward and backward",
             "A convolution with explicit loops (the naive version), then the matrix products of the im2col "
             "version: the forward GEMM and the weight, bias and column gradients.",
             (("functional/conv_naive.py", "conv2d_naive_forward"),
              ("functional/conv_naive.py", "conv2d_naive_backward"),
              ("functional/conv.py", "conv2d_forward"), ("functional/conv.py", "conv2d_backward")),
             ("notebooks/*conv*.ipynb", "notebooks/*cnn*.ipynb"), points=20),
    Exercise("pool", "Max-pooling backward",
             "Route the gradient of each pooling window to its maximum, adding where windows overlap.",
             (("functional/pooling.py", "maxpool2d_backward"),),
             ("notebooks/*pool*.ipynb",), points=10),
    Exercise("softmax", "Softmax cross-entropy, forward and backward",
             "The cross-entropy loss of softmax scores, with class weights and label smoothing, and its "
             "gradient with respect to the scores.",
             (("functional/loss.py", "cross_entropy_forward"), ("functional/loss.py", "cross_entropy_backward")),
             ("notebooks/*softmax*.ipynb",), points=10),
    Exercise("batchnorm", "Batch-norm backward",
             "The gradients of batch normalisation with respect to its input, scale and shift, in the compact "
             "form that sums over each channel once.",
             (("functional/batchnorm.py", "batchnorm_backward"),),
             ("notebooks/*batchnorm*.ipynb",), points=15),
)


def select(names=None, registry=EXERCISES) -> list[Exercise]:
    """The exercises called ``names`` (a list or a comma-separated string), in registry order; all if None."""
    if names is None:
        return list(registry)
    if isinstance(names, str):
        names = names.split(",")
    wanted = [n.strip() for n in names if n.strip()]
    known = {e.name: e for e in registry}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown exercise(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if not wanted:
        raise ValueError(f"no exercise selected; choose from {', '.join(known)}")
    return [e for e in registry if e.name in wanted]


@dataclass
class PackageScan:
    """The marked regions of every .py file of a package: ``files[relative path] = (text, regions)``."""
    package_dir: Path
    files: dict = field(default_factory=dict)

    @property
    def package_name(self) -> str:
        return self.package_dir.name

    def display(self, relative: str) -> str:
        """``minigru/functional/gru.py`` for ``functional/gru.py``."""
        return f"{self.package_name}/{relative}"


def scan_package(package_dir) -> PackageScan:
    """Parse the markers of every .py file under ``package_dir`` except the classroom package itself
    (whose own sources talk about markers). MarkerError for malformed markers anywhere."""
    package_dir = Path(package_dir).resolve()
    scan = PackageScan(package_dir)
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).as_posix()
        if relative.startswith("classroom/") or "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        scan.files[relative] = (text, find_regions(text, scan.display(relative)))
    return scan


def exercise_regions(exercise: Exercise, scan: PackageScan):
    """``(found, missing)``: the (relative file, Region) pairs of ``exercise``, and a message for every
    listed function that has no region (file or function missing, or no markers in it)."""
    found, missing = [], []
    for relative, function in exercise.functions:
        if relative not in scan.files:
            missing.append(f"{scan.display(relative)} does not exist (expected {function} with a solution region)")
            continue
        regions = [r for r in scan.files[relative][1] if r.function == function]
        if not regions:
            missing.append(f"{scan.display(relative)}: {function} has no ### BEGIN SOLUTION region")
        found.extend((relative, r) for r in regions)
    return found, missing


def exercise_notebooks(exercise: Exercise, project_dir) -> list[tuple[Path, list[Region]]]:
    """Notebooks matching the exercise's patterns under ``project_dir`` that carry markers, with their regions."""
    if project_dir is None:
        return []
    project_dir = Path(project_dir)
    found = []
    for pattern in exercise.notebooks:
        for path in sorted(project_dir.glob(pattern)):
            if ".ipynb_checkpoints" in path.parts or any(path == p for p, _ in found):
                continue
            where = path.relative_to(project_dir).as_posix()
            regions = notebook_regions(read_notebook(path), where)
            if regions:
                found.append((path, regions))
    return found


def unassigned_regions(scan: PackageScan, registry=EXERCISES) -> list[Region]:
    """Regions of the package that belong to no exercise of ``registry`` (they are never stripped)."""
    claimed = {(relative, function) for e in registry for relative, function in e.functions}
    return [r for relative, (_, regions) in scan.files.items() for r in regions
            if (relative, r.function) not in claimed]


def self_containment_problems(scan: PackageScan) -> list[str]:
    """One message per region whose later code reads a variable the region assigns but no hint names."""
    problems = []
    for text, regions in scan.files.values():
        for region in regions:
            names = undeclared_names(text, region)
            if names:
                problems.append(f"{region.location} ({region.function}): code after the region uses "
                                f"{', '.join(names)}, which the region defines but no ### HINT: line names")
    return problems


def check_registry(registry=EXERCISES) -> None:
    """Raise ValueError for duplicate exercise names or a function claimed by two exercises."""
    names = [e.name for e in registry]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate exercise names in the registry: {names}")
    owners = {}
    for e in registry:
        for key in e.functions:
            if key in owners:
                raise ValueError(f"{key[1]} in {key[0]} belongs to both {owners[key]} and {e.name}")
            owners[key] = e.name


check_registry()
