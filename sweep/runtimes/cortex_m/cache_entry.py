"""Cache entries that are checked before every use and rebuilt when anything is off.

The firmware cache may be shared between sweeps, users and machines, so an entry
is untrusted input like a model file. Three rules keep a planted or damaged entry
from doing harm:

- nothing read from an entry reaches a compiler or a shell as an option: flags
  are derived from the third-party sources and this package (:mod:`.library`),
  and what an entry holds is only ever data (an archive to link into emulated
  firmware, an ELF to emulate, figures to report);
- every file is listed in ``manifest.json`` with its size and SHA-256, and the
  entry must hold exactly those files, all regular, none a symlink (nothing is
  followed, so an entry cannot point a read or a write elsewhere); files are
  opened with ``O_NOFOLLOW`` and what is used is the bytes that were checked;
- a bad entry is reported in one line, removed and rebuilt, never trusted.

Entries are built in a temporary folder and renamed into place under an
exclusive lock whose file is opened with ``O_NOFOLLOW`` (a planted symlink named
like the lock is removed, so its target is never opened, let alone truncated).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

Loaded = TypeVar("Loaded")
MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 1 << 20
_MAX_FILE_BYTES = 256 << 20


class BadEntry(ValueError):
    """A cache entry that must not be used; the message says why."""


def read_checked(path: Path) -> bytes:
    """A regular file's bytes, refusing a symlink at ``path`` (``O_NOFOLLOW``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise BadEntry(f"{path.name} is a symlink") from None
        raise BadEntry(f"{path.name} cannot be read ({error.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BadEntry(f"{path.name} is not a regular file")
        if info.st_size > _MAX_FILE_BYTES:
            raise BadEntry(f"{path.name} is larger than {_MAX_FILE_BYTES} bytes")
        return handle.read()


def _files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by relative path; a symlink or special file anywhere
    makes the entry bad (nothing is followed)."""
    found: dict[str, Path] = {}
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_symlink():
                    raise BadEntry(f"{path.relative_to(root)} is a symlink")
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found[path.relative_to(root).as_posix()] = path
                else:
                    raise BadEntry(f"{path.relative_to(root)} is not a regular file")
    return found


def write_manifest(root: Path) -> None:
    """List every file of a freshly built entry with its size and SHA-256."""
    files = {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, path in sorted(_files(root).items())
        if name != MANIFEST
        for data in (read_checked(path),)
    }
    (root / MANIFEST).write_text(json.dumps({"version": 1, "files": files}, indent=1))


def verify(root: Path, required: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The entry's files (relative path -> the bytes checked), or :class:`BadEntry`.

    ``required``: files the entry must hold (a consistent manifest without them
    is still a bad entry)."""
    try:
        info = os.lstat(root)
    except FileNotFoundError:
        raise BadEntry("it does not exist") from None
    if not stat.S_ISDIR(info.st_mode):
        raise BadEntry("it is not a folder (a symlink?)")
    present = _files(root)
    raw = read_checked(root / MANIFEST) if MANIFEST in present else None
    if raw is None:
        raise BadEntry(f"it has no {MANIFEST} (never finished?)")
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise BadEntry(f"{MANIFEST} is too large")
    try:
        listed = json.loads(raw)["files"]
        expected = {str(k): (int(v["size"]), str(v["sha256"])) for k, v in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BadEntry(f"{MANIFEST} is not a manifest") from None
    names = set(present) - {MANIFEST}
    absent = [name for name in required if name not in expected]
    if absent:
        raise BadEntry(f"it lacks {absent[0]}")
    if names != set(expected):
        extra, missing = sorted(names - set(expected)), sorted(set(expected) - names)
        raise BadEntry(f"its files differ from {MANIFEST} (extra {extra}, missing {missing})")
    checked = {}
    for name in sorted(names):
        data = read_checked(present[name])
        size, digest = expected[name]
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise BadEntry(f"{name} does not match its checksum")
        checked[name] = data
    return checked


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, opened without following a symlink there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        log.warning("%s is a symlink: removed (its target is left alone)", path)
        path.unlink()
        fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _remove(path: Path) -> None:
    """Remove an entry or whatever sits in its place, without following symlinks."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def fetch(
    final: Path,
    build: Callable[[Path], None],
    required: tuple[str, ...],
    load: Callable[[dict[str, bytes]], Loaded],
) -> tuple[Loaded, bool]:
    """``load`` of the verified files of the entry ``final``, and whether this call built it.

    A missing or bad entry is built by ``build(folder)`` into a temporary folder
    next to it, listed in a manifest and renamed into place, all under the
    entry's lock, so concurrent processes build it once. ``required``: the files
    a good entry holds; ``load`` turns them into what the caller uses, and an
    entry whose files it cannot read (ValueError, KeyError, TypeError) is bad too.
    """

    def checked() -> Loaded:
        files = verify(final, required)
        try:
            return load(files)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise BadEntry(f"its contents cannot be read ({error})") from None

    try:
        return checked(), False
    except BadEntry:
        pass
    final.parent.mkdir(parents=True, exist_ok=True)
    with locked(final.with_name(final.name + ".lock")):
        try:
            return checked(), False  # built by another process meanwhile
        except BadEntry as bad:
            if os.path.lexists(final):
                log.warning("firmware cache entry %s is not valid (%s): rebuilding it", final, bad)
                _remove(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            build(tmp)
            write_manifest(tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return checked(), True
