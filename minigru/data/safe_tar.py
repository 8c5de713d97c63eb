"""Extract a downloaded .tar.gz without letting it write outside its target folder.

A tar member may be called ``../../.bashrc`` or ``/etc/passwd``, or be a link
pointing out of the folder; a naive ``extractall`` then overwrites files
anywhere the user can write. :func:`safe_extract` checks every member first
(only regular files and folders, all inside the target) and refuses the whole
archive otherwise; it also passes ``filter="data"`` to ``tarfile`` where
Python supports it (3.10.12+, 3.11.4+), which applies the same rules again.
"""
from __future__ import annotations

import pathlib
import tarfile

from .base import DatasetError, UnsafeDataError

__all__ = ["safe_extract"]


def _check_member(member: tarfile.TarInfo, target: pathlib.Path, archive) -> None:
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise UnsafeDataError(f"{archive}: member {member.name!r} is a {kind}; a data archive should hold "
                              "only files and folders, so nothing was extracted")
    destination = (target / member.name).resolve()
    if member.name.startswith(("/", "\\")) or not destination.is_relative_to(target):
        raise UnsafeDataError(f"{archive}: member {member.name!r} would be written outside {target}; "
                              "the archive is refused and nothing was extracted")


def safe_extract(archive, target) -> list[str]:
    """Extract the .tar(.gz) ``archive`` into folder ``target``; return the member names.

    Raises UnsafeDataError (nothing extracted) for members outside ``target``,
    absolute names, links and device files; DatasetError for an unreadable archive.
    """
    archive = pathlib.Path(archive)
    target = pathlib.Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, target, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, members=members, filter="data")
            else:  # older Python: our own checks above are the whole protection
                tar.extractall(target, members=members)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(f"{archive}: cannot read the archive ({type(err).__name__}: {err}); "
                           "it is truncated or not a .tar.gz file; delete it and download again") from err
    return [m.name for m in members]
