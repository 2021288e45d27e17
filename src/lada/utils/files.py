"""Atomic writes: a file is either the old version or the new one, never half written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` endings, fsynced) via a temp file beside ``path`` and
    ``os.replace``; the parent folder is created. The package's one atomic text writer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """``obj`` as indented JSON with sorted keys and a final newline, written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written ``tmp_dir`` into place as ``final_dir`` (old one removed)."""
    if final_dir.exists():
        old = final_dir.with_name(final_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, final_dir)


def open_append(path: str | os.PathLike[str]) -> Any:
    """``path`` opened for appending UTF-8 text, never through a symlink (``O_NOFOLLOW``: a
    link planted at ``path`` is an ``OSError``, not a write elsewhere)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o644), "a", encoding="utf-8", newline="\n")


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` and a newline to ``path`` (:func:`open_append`), fsynced."""
    with open_append(path) as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def fsync_tree(path: str | os.PathLike[str], recursive: bool = True) -> None:
    """fsync the regular files under ``path`` (only its own with ``recursive=False``) and the
    folders themselves, so that what was written there is on disk (symlinks are skipped)."""
    root = Path(path)
    dirs = [root]
    if recursive:
        dirs += [p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()]
    for d in dirs:
        for p in d.iterdir():
            if p.is_file() and not p.is_symlink():
                fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
