"""LaDa's on-disk cache (``$LADA_CACHE``, default ``~/.cache/lada``): where it is, private
folders inside it, and entries published whole or not at all.

Folders the cache creates are ``0700`` (the owner alone can read, add or replace entries).
An entry is built in a temporary folder beside its final place (:func:`fresh_tmp`) and moved
there with one ``os.replace`` (:func:`publish`), so readers never see a half-written entry; the
temporary folder of a killed build is removed by the next build of that entry.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PRIVATE = 0o700


def cache_root() -> Path:
    """``$LADA_CACHE``, else ``~/.cache/lada`` (not created here)."""
    return Path(os.environ.get("LADA_CACHE", Path.home() / ".cache" / "lada"))


def private_dir(path: Path) -> Path:
    """``path`` made (with missing parents) as a ``0700`` folder; folders that already exist
    keep their mode."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(folder, PRIVATE)  # mkdir's mode is masked by the umask
    return path


def cache_dir(*parts: str) -> Path:
    """The cache subfolder ``parts`` (e.g. ``"models"``), created ``0700`` with the root."""
    return private_dir(cache_root().joinpath(*parts))


def publish(tmp: Path, out: Path) -> None:
    """Move a finished folder into place; if another process got there first, keep theirs."""
    try:
        os.replace(tmp, out)
    except OSError:
        if not out.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def fresh_tmp(out: Path) -> Path:
    """An empty temporary folder path beside ``out`` (this process's), to build an entry in and
    :func:`publish`; ``out``'s parent is made ``0700``, and temporary folders of ``out`` left by
    processes that no longer run (a killed build) are removed."""
    private_dir(out.parent)
    for old in out.parent.glob(f"{out.name}.tmp-*"):
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
