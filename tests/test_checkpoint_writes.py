"""Checkpoint writes: a save killed outright leaves no temporary file for good, a live save in
another process is never disturbed, and a checkpoint gets the permissions of any new file."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigru
from minigru.nn import Linear
from minigru.train import load_checkpoint, save_checkpoint
from test_checkpoint import make_model

CHILD = r"""
import os, signal, sys
import numpy as np
from minigru.nn import Linear
from minigru.train import save_checkpoint

real_savez = np.savez

def savez(file, **arrays):
    real_savez(file, **dict(list(arrays.items())[:1]))  # part of the file is written ...
    file.flush()
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)            # ... then the process is killed outright
    print("writing", flush=True)
    sys.stdin.readline()                                # ... or waits, alive, until told to go on
    file.seek(0)
    file.truncate()
    real_savez(file, **arrays)

np.savez = savez
save_checkpoint(sys.argv[1], Linear(3, 2, rng=int(sys.argv[3])))
"""


def _child(path, mode, seed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(minigru.__file__)), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode, str(seed)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _temps(folder, name="c.npz"):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize("then", ["load", "save"])
def test_temp_file_of_a_killed_save_is_removed_by_the_next_save_or_load(tmp_path, then):
    path = tmp_path / "c.npz"
    save_checkpoint(path, Linear(3, 2, rng=1), epoch=1)
    decoys = [".c.npz.tmp", ".c.npz.abcdefgh.tmp.keep", ".other.npz.abcdefgh.tmp", "c.npz.abcdefgh.tmp",
              ".c.npz.abcdefghi.tmp"]
    for name in decoys:
        (tmp_path / name).write_bytes(b"not ours")
    child = _child(path, "kill", 2)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    orphans = [name for name in _temps(tmp_path) if name not in decoys]
    assert len(orphans) == 1                             # what the kill left behind
    if then == "load":
        assert load_checkpoint(path, Linear(3, 2, rng=3)).epoch == 1  # the previous checkpoint is intact
    else:
        save_checkpoint(path, Linear(3, 2, rng=3), epoch=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.npz", *decoys])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX flock")
def test_a_live_save_in_another_process_keeps_its_temp_file(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, Linear(3, 2, rng=1), epoch=1)
    child = _child(path, "wait", 5)
    try:
        assert child.stdout.readline().strip() == "writing"
        live = _temps(tmp_path)
        assert len(live) == 1
        assert load_checkpoint(path, Linear(3, 2, rng=3)).epoch == 1
        save_checkpoint(path, Linear(3, 2, rng=4), epoch=7)
        assert live[0] in _temps(tmp_path)               # neither the load nor the save touched it
        child.stdin.write("go on\n")
        child.stdin.flush()
        child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0
    assert _temps(tmp_path) == []
    restored = Linear(3, 2, rng=3)
    load_checkpoint(path, restored)                      # the live save completed: its weights are there
    np.testing.assert_array_equal(restored.weight.data, Linear(3, 2, rng=5).weight.data)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(umask=st.integers(0, 0o777).map(lambda m: m & ~0o600))
def test_checkpoint_permissions_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        for name in ("new.npz", "new.npz"):              # a new file, then one replacing it
            save_checkpoint(tmp_path / name, make_model())
            with open(tmp_path / "other.json", "w") as f:  # any other file a run writes
                f.write("{}")
            assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask
            assert os.stat(tmp_path / name).st_mode & 0o777 == os.stat(tmp_path / "other.json").st_mode & 0o777
            os.unlink(tmp_path / "other.json")
    finally:
        os.umask(old)
    for name in os.listdir(tmp_path):
        os.unlink(tmp_path / name)
