"""Files in folders that others can write: a shared cache, a sweep folder.

Caches are shared between sweeps, and between machines in the Ray set-up, so whoever
can write them can plant an entry. Three file-system tricks would turn a planted
entry against the next sweep, whatever the checksums say:

- a **symbolic link** is followed by ``open()``: an entry's ``bundle/x -> ~/.ssh/id_rsa``
  would be copied into the job's folder and uploaded as an artifact, a lock file
  linked to ``~/.bashrc`` truncated;
- a **named pipe** (or a device) blocks a reader forever, or never ends;
- a **hard link** to a victim file is that file: truncating it truncates the victim.

So files here are opened with ``O_NOFOLLOW`` (a link is an error, never followed) and
``O_NONBLOCK``, checked to be regular files, read with a size bound, and lock files
are never truncated unless they have one link. Callers treat :class:`Refused` as a
damaged entry.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

MAX_FILE_BYTES = 1 << 30
"""The largest file read from an entry (a cached model, its bundle, its predictions)."""


class Refused(OSError):
    """A file an entry must not hold: a link, a pipe, a device, or too big."""


def _open_regular(path: Path, flags: int) -> int:
    """An fd of the regular file at ``path``, never following a link; Refused otherwise."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except IsADirectoryError:
        raise Refused(f"{path} is a folder") from None
    except OSError:
        if Path(path).is_symlink():
            raise Refused(f"{path} is a symbolic link") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(f"{path} is not a regular file")
    return fd


def read_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file at ``path`` (not a link, at most ``limit`` bytes)."""
    fd = _open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as stream:
        size = os.fstat(fd).st_size
        if size > limit:
            raise Refused(f"{path} holds {size:,} bytes, more than {limit:,}")
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"{path} grew beyond {limit:,} bytes while read")
    return data


def entry_files(folder: Path) -> list[str]:
    """Paths (relative, '/'-separated) of every file under ``folder``, which must hold only
    folders and regular files: a link or anything else anywhere in it is Refused."""
    if Path(folder).is_symlink():
        raise Refused(f"{folder} is a symbolic link")
    found: list[str] = []
    todo = [(Path(folder), "")]
    while todo:
        current, prefix = todo.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                name = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    raise Refused(f"{Path(folder) / name} is a symbolic link")
                if entry.is_dir(follow_symlinks=False):
                    todo.append((Path(entry.path), f"{name}/"))
                elif entry.is_file(follow_symlinks=False):
                    found.append(name)
                else:
                    raise Refused(f"{Path(folder) / name} is not a regular file")
    return sorted(found)


def open_lock(path: Path) -> int:
    """An fd of the lock file at ``path`` (created if missing, never truncated here): Refused
    when a link, not a regular file, or a file with other names (hard links) is there."""
    fd = _open_regular(path, os.O_RDWR | os.O_CREAT)
    if os.fstat(fd).st_nlink != 1:
        os.close(fd)
        raise Refused(f"{path} has other names (hard links)")
    return fd


def replace_lock(path: Path) -> int:
    """:func:`open_lock`, after removing whatever Refused thing sits at ``path`` (removing a
    link or a name never touches its target). For locks of a cache, which repairs itself;
    two processes replacing it at once may each lock their own file: at worst a stage is
    built twice, each build renamed into place whole."""
    try:
        return open_lock(path)
    except Refused:
        Path(path).unlink(missing_ok=True)
        return open_lock(path)


def remove(path: Path) -> None:
    """Remove a file, a link (never its target) or a folder (never following links in it)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
