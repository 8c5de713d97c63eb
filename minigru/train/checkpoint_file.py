"""The checkpoint's container: a plain ``.npz`` (zip of ``.npy`` members), written atomically, read strictly.

:mod:`minigru.train.checkpoint` decides *what* a checkpoint holds; this module
moves named NumPy arrays to and from disk:

* :func:`write_arrays` writes to a temporary file beside the target
  (``.<name>.<8 random characters>.tmp``), flushes it to disk and renames it
  over the target, so readers see the old file or the new one, never half of
  one. The file is created with mode ``0o666`` minus the umask, like every
  other file a run writes (``tempfile.mkstemp`` would force ``0o600``). While
  it writes, the process holds an exclusive ``flock`` on the temporary file.
* :func:`remove_stale_temps` deletes the temporary files a *killed* save left
  behind: only names of exactly that pattern for exactly this checkpoint, only
  regular files, and only when no process holds their lock (a live save in
  another process keeps its file). Without ``fcntl`` (Windows) an open file
  cannot be deleted there anyway, which protects a live save the same way.
* :func:`read_arrays` parses the zip and every ``.npy`` header itself (no
  pickle is ever possible: object dtypes are refused before any data is read),
  requires each member to hold exactly the bytes its header declares (so the
  zip's CRC-32 is always checked) and raises :class:`CheckpointError` naming
  the file for anything malformed, whatever the library underneath raised.
* :func:`array_digest` is the SHA-256 of one array's dtype, shape and bytes;
  the checkpoint stores one per array, so a member that changed by any route
  (not only what the zip's CRC sees) is found.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import stat
import zipfile

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["CheckpointError", "write_arrays", "read_arrays", "remove_stale_temps", "array_digest"]

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, or does not fit the model/optimizer it is loaded into."""


def array_digest(array: np.ndarray) -> str:
    """``"sha256:<hex>"`` of the array's dtype, shape and C-order bytes (its layout in memory does not matter)."""
    digest = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
    digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return "sha256:" + digest.hexdigest()


# ------------------------------------------------------------------ temporary files
def _temp_pattern(path: str) -> re.Pattern:
    # tempfile's 8-character alphabet, so that files left by earlier minigru versions (mkstemp) match too
    return re.compile(rf"\.{re.escape(os.path.basename(path))}\.[a-z0-9_]{{8}}\.tmp")


def _new_temp(path: str) -> tuple[int, str]:
    """Create and lock a fresh temporary file beside ``path``; return (fd, name)."""
    directory, base = os.path.split(os.path.abspath(path))
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for any new file
        except FileExistsError:
            continue
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks: cleaners cannot lock it either, so they leave it alone
            return fd, tmp
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        # A cleaner in another process saw the file before we locked it and deleted it: take another name.
        os.close(fd)


def remove_stale_temps(path) -> list[str]:
    """Delete the temporary files of killed saves of ``path`` (see the module docstring); return their names.

    Best effort: a file that cannot be inspected or deleted is left alone, and
    nothing here ever fails a save or a load.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pattern = _temp_pattern(path)
    try:
        names = [n for n in os.listdir(directory) if pattern.fullmatch(n)]
    except OSError:
        return []
    removed = []
    for name in names:
        candidate = os.path.join(directory, name)
        try:
            if not stat.S_ISREG(os.lstat(candidate).st_mode):
                continue  # a link or anything else with that name is not ours
            if fcntl is None:
                os.unlink(candidate)  # fails (PermissionError) while the writing process has it open
                removed.append(candidate)
                continue
            fd = os.open(candidate, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live save holds it
            same = os.fstat(fd)
            now = os.lstat(candidate)
            if (same.st_dev, same.st_ino) == (now.st_dev, now.st_ino):
                os.unlink(candidate)
                removed.append(candidate)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def write_arrays(path, arrays: dict) -> None:
    """Write ``arrays`` (name -> ndarray) as an .npz at ``path``, atomically (see the module docstring)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = _new_temp(path)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if fcntl is None:
            os.close(fd)  # Windows cannot rename an open file
            fd = None
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock, after the rename: the name was never free for a cleaner
    try:  # make the rename itself durable (not possible on every OS/filesystem)
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ------------------------------------------------------------------ reading
def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int) -> np.ndarray:
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"member {info.filename!r} has .npy format version {version}, which minigru never writes")
        if dtype.hasobject:
            raise CheckpointError(f"member {info.filename!r} holds Python objects ({dtype}), which could only be "
                                  "loaded with pickle; minigru never writes such arrays and does not load them")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size or (info.compress_type == zipfile.ZIP_STORED and nbytes > archive_size):
            raise ValueError(f"member {info.filename!r} declares {nbytes} bytes of data but holds at most "
                             f"{min(info.file_size, archive_size)}")
        array = np.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
        view = memoryview(array.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
        done = 0
        while done < nbytes:
            got = f.readinto(view[done:])
            if not got:
                raise ValueError(f"member {info.filename!r} ends after {done} of its {nbytes} bytes of data")
            done += got
        if f.read(1):  # reading to the end is also what makes zipfile check the member's CRC-32
            raise ValueError(f"member {info.filename!r} holds more bytes than its header declares")
    return array.T if fortran_order else array


def read_arrays(path: str) -> dict:
    """name -> ndarray for every member of the .npz at ``path``; CheckpointError (naming it) if malformed."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
            size = os.fstat(f.fileno()).st_size
            if head.startswith(NPY_MAGIC):
                raise CheckpointError(f"{path!r} is a single NumPy array (.npy), not a minigru checkpoint "
                                      "(.npz written by save_checkpoint)")
            if head[:len(ZIP_MAGIC)] != ZIP_MAGIC:
                raise CheckpointError(f"cannot read checkpoint {path!r}: the file is corrupt or truncated, or not "
                                      "an .npz file (it does not start as a zip file does)")
            with zipfile.ZipFile(f) as zf:
                arrays = {}
                for info in zf.infolist():
                    if not info.filename.endswith(".npy") or info.is_dir():
                        raise CheckpointError(f"{path!r}: member {info.filename!r} is not a .npy array; "
                                              "the file is not a minigru checkpoint")
                    name = info.filename[:-len(".npy")]
                    if name in arrays:
                        raise CheckpointError(f"{path!r}: the zip holds two members named {info.filename!r}; "
                                              "the file is damaged")
                    arrays[name] = _read_member(zf, info, size)
                return arrays
    except CheckpointError as err:
        if repr(path) in str(err):
            raise
        raise CheckpointError(f"cannot read checkpoint {path!r}: {err}") from err
    except FileNotFoundError:
        raise  # the caller names what is missing, and where it looked
    except IsADirectoryError as err:
        raise CheckpointError(f"{path!r} is a folder, not a checkpoint file") from err
    except PermissionError as err:
        raise CheckpointError(f"cannot read checkpoint {path!r}: permission denied") from err
    except Exception as err:  # zipfile, zlib and numpy raise many types on damaged bytes; each means the same
        detail = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"cannot read checkpoint {path!r}: the file is corrupt or truncated, or not an "
                              f".npz file ({type(err).__name__}: {detail})") from err
