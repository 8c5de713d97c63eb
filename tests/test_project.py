"""The project's front door: the README's commands and example, and CI running what the README says.

- The Quick start gives exactly two set-up commands (the main job, the tests), and `.ci/run` runs
  the README's test command character for character.
- The README's Python example runs, and trains: its loss falls.
- The README's main-job command names a registered model and options the CLI accepts.
- The README has no unfilled template markers, and every figure table names its command.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def _quick_start_commands() -> list[str]:
    commands = [line.strip() for block in _blocks(_section("Quick start"), "bash")
                for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(commands) == 2, f"the Quick start must give exactly two commands, found {commands}"
    return commands


def test_quick_start_has_the_main_job_and_the_test_command():
    main_job, tests = _quick_start_commands()
    assert "python -m minigru train" in main_job and main_job.startswith("pip install -e"), main_job
    assert tests.startswith("pip install -e") and tests.endswith("python -m pytest"), tests


def test_ci_runs_the_readme_test_command_exactly():
    test_command = _quick_start_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert test_command in ci_lines, f".ci/run must contain the README's test command {test_command!r}"
    assert "python -m pip install --quiet torch==2.13.0" in ci_lines, "CI must install torch for the reference tests"


def test_main_job_command_is_accepted_by_the_cli():
    main_job = _quick_start_commands()[0]
    argv = main_job.split("python -m minigru ", 1)[1].split()
    from minigru.cli import build_parser

    args = build_parser().parse_args(argv)          # exits (SystemExit) on an unknown model or option
    from minigru.models import model_names
    assert args.model in model_names()


def test_readme_example_runs_and_learns(tmp_path):
    blocks = _blocks(_section("Example"), "python")
    assert len(blocks) == 1, "the Example section should hold one python block"
    script = tmp_path / "readme_example.py"
    script.write_text(blocks[0], encoding="utf-8")
    env = {"OPENBLAS_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", done.stdout)]
    assert len(losses) == 3, done.stdout
    # Ten balanced classes: a model that has learned nothing sits at ln(10) = 2.30.
    assert losses[-1] < 0.85 * losses[0] and losses[-1] < 2.0, done.stdout
    assert done.stdout.strip().splitlines()[-1] == "True", "the example's gradient check must pass"


def test_readme_has_no_template_markers_and_its_figures_name_their_command():
    leftovers = re.findall(r"\b(?:RESULTS_TABLE|NOTEBOOK_TABLE|GPU_STATUS|TODO|TBD)\b", README)
    assert not leftovers, f"README.md still has template markers: {leftovers}"
    results = _section("Results on CIFAR-10")
    assert "python -m minigru train" in results, "the results must say the command that produced them"
    assert re.search(r"\d+\.\d+ ?%", results), "the results section should report measured accuracies"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_every_notebook_is_listed_in_the_readme(name):
    assert name in README, f"README.md's Tutorials table does not list notebooks/{name}"
