"""The model and kernel cache: private folders, entries published whole, and C kernel
libraries loaded only when they are the user's own, unshared and unchanged since their build."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
from pathlib import Path

import pytest

from lada.accel import c_build
from lada.utils.cache import cache_dir, fresh_tmp, private_dir

SOURCE = c_build.KERNELS / "dropout.c"
needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no cc")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("LADA_CACHE", str(root))
    return root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cache_folders_are_created_private(cache):
    sub = cache_dir("models")
    assert sub == cache / "models"
    assert _mode(cache) == 0o700 and _mode(sub) == 0o700


def test_existing_folders_keep_their_mode(tmp_path):
    common = tmp_path / "common"
    common.mkdir(mode=0o755)
    os.chmod(common, 0o755)
    private_dir(common / "a" / "b")
    assert _mode(common) == 0o755
    assert _mode(common / "a") == 0o700 and _mode(common / "a" / "b") == 0o700


def test_a_killed_builds_temporary_folder_is_removed_by_the_next_build(cache):
    out = cache_dir("models") / "m-123"
    dead = out.with_name(f"{out.name}.tmp-999999999")  # no such process
    dead.mkdir()
    (dead / "half.bin").write_bytes(b"x")
    tmp = fresh_tmp(out)
    assert not dead.exists()
    assert tmp.name == f"{out.name}.tmp-{os.getpid()}" and not tmp.exists()
    assert not out.exists()  # nothing published


@needs_cc
def test_a_built_kernel_has_its_sha256_beside_it_and_private_folders(cache):
    lib = c_build.library_path(SOURCE)
    digest = lib.with_name(lib.name + ".sha256")
    assert digest.read_text().strip() == c_build._sha256(lib)
    assert _mode(cache / "kernels") == 0o700 and _mode(lib.parent) == 0o700
    assert c_build.verified(lib) == lib
    assert isinstance(c_build.load_library(SOURCE, {}), ctypes.CDLL)


@needs_cc
def test_a_changed_library_is_refused(cache):
    lib = c_build.library_path(SOURCE)
    with open(lib, "ab") as f:
        f.write(b"\0")
    with pytest.raises(c_build.KernelBuildError, match="sha256 differs"):
        c_build.load_library(SOURCE, {})


@needs_cc
def test_a_group_or_world_writable_library_is_refused(cache):
    lib = c_build.library_path(SOURCE)
    os.chmod(lib, 0o722)
    with pytest.raises(c_build.KernelBuildError, match="writable by group or others"):
        c_build.load_library(SOURCE, {})
    os.chmod(lib, 0o700)
    os.chmod(lib.parent, 0o777)
    with pytest.raises(c_build.KernelBuildError, match="writable by group or others"):
        c_build.load_library(SOURCE, {})


@needs_cc
def test_a_library_owned_by_someone_else_is_refused(cache, monkeypatch):
    lib = c_build.library_path(SOURCE)
    monkeypatch.setattr(os, "getuid", lambda: lib.stat().st_uid + 1)
    with pytest.raises(c_build.KernelBuildError, match="not by you"):
        c_build.load_library(SOURCE, {})


@needs_cc
def test_a_library_without_a_recorded_digest_is_built_again(cache):
    lib = c_build.library_path(SOURCE)
    planted = b"not a library"
    lib.write_bytes(planted)
    lib.with_name(lib.name + ".sha256").unlink()
    assert c_build.library_path(SOURCE) == lib
    assert lib.read_bytes() != planted
    assert c_build.verified(lib) == lib
