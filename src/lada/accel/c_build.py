"""Compile and load LaDa's C kernels (``lada/accel/kernels/*.c``) on the machine they run on.

A source is compiled once per machine, source text and compiler with the system C compiler
(``$CC``, else ``cc``; :data:`FLAGS`: ``-O3 -march=native -ffp-contract=off -fopenmp``) into
``$LADA_CACHE/kernels/<key>/<name>.so`` (folders ``0700``, the library's sha256 beside it) and
loaded with ctypes (OpenMP then runs on torch's own libgomp: the same soname, loaded first, one
thread pool) once :func:`verified` finds it the user's own, writable by nobody else and
unchanged since its build. Users of a library check it against
PyTorch before trusting it (a probe) and fall back to PyTorch ops, saying why, where it cannot
be built.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from lada.accel.switch import kernels_allowed
from lada.utils.cache import cache_dir
from lada.utils.files import atomic_write_text
from lada.utils.log_once import log_once

KERNELS = Path(__file__).with_name("kernels")
FLAGS = (
    "-O3",
    "-march=native",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fopenmp",
    "-std=gnu11",
    "-fPIC",
)


class KernelBuildError(RuntimeError):
    """A C kernel library could not be compiled or loaded here."""


def _cpu_key() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags (Linux), else the
    machine type."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))]
    return platform.machine() + "\n" + "\n".join(sorted(set(lines)))


def _compiler() -> str:
    name = os.environ.get("CC", "cc")
    if shutil.which(name) is None:
        raise KernelBuildError(f"no C compiler {name!r} on PATH (set $CC to one)")
    return name


def library_path(source: Path) -> Path:
    """Where the compiled library of ``source`` (and the headers beside it) for this compiler
    and CPU lives (built, ~1 s, if missing; concurrent builders leave one complete file), with
    its sha256 recorded beside it (``<name>.so.sha256``, checked by :func:`verified`)."""
    cc = _compiler()
    headers = [h.read_text() for h in sorted(source.parent.glob("*.h"))]  # what it may include
    key = hashlib.sha256(
        "\n".join([source.read_text(), *headers, cc, " ".join(FLAGS), _cpu_key()]).encode()
    ).hexdigest()[:16]
    path = cache_dir("kernels", key) / f"{source.stem}.so"
    if path.exists() and _digest_path(path).exists():
        return path  # a library without a recorded digest is built again
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / path.name
        cmd = [cc, *FLAGS, "-shared", "-o", str(out), str(source), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KernelBuildError(
                f"compiling {source.name} failed ({' '.join(cmd)}):\n{done.stderr.strip()}"
            )
        os.chmod(out, 0o700)
        atomic_write_text(_digest_path(path), _sha256(out) + "\n")
        os.replace(out, path)  # atomic
    return path


def _digest_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verified(library: Path) -> Path:
    """``library`` if it may be loaded: it and its folder are owned by this user and writable
    by nobody else, and its sha256 equals the one recorded when it was built; else a
    :class:`KernelBuildError` saying why it is refused (a cache shared with others, or a
    file replaced after the build)."""
    for item in (library.parent, library):
        st = item.stat()
        if st.st_uid != os.getuid():
            raise KernelBuildError(f"refusing {item}: owned by uid {st.st_uid}, not by you")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KernelBuildError(
                f"refusing {item}: writable by group or others (mode {stat.filemode(st.st_mode)})"
            )
    digest = _digest_path(library)
    if not digest.exists():
        raise KernelBuildError(f"refusing {library}: no recorded sha256 ({digest.name})")
    if _sha256(library) != digest.read_text().strip():
        raise KernelBuildError(
            f"refusing {library}: its sha256 differs from the one recorded when it was built"
        )
    return library


def choose(
    kernels: bool | None,
    unsupported: Callable[[], str | None],
    what: str,
    logger: logging.Logger,
    fallback: str = "PyTorch ops instead",
    say: bool = True,
) -> bool:
    """Whether to run ``what`` (C kernels): ``kernels`` True demands them (an error says why
    they cannot run), False refuses, None uses them where ``unsupported()`` gives no reason,
    logging that reason once where it does (when ``say``), unless the run's ``runtime.accel``
    is not ``native`` (:mod:`lada.accel.switch`: PyTorch ops everywhere)."""
    if kernels is None and not kernels_allowed():
        return False
    if kernels is False:
        return False
    reason = unsupported()
    if reason is not None and kernels is True:
        raise ValueError(f"cannot run {what}: {reason}")
    if reason is not None and say:
        log_once(logger, f"{what} not used ({reason}); {fallback}")
    return reason is None


def threads_for(elements: int) -> int:
    """PyTorch's intra-op thread count for a kernel call over this many elements, one below
    64 Ki (e.g. a decode step's 16 rows: a second thread costs more than it saves)."""
    import torch

    return torch.get_num_threads() if elements >= 1 << 16 else 1


def load_library(source: Path, signatures: dict[str, list[type]]) -> ctypes.CDLL:
    """The compiled ``source`` (see :func:`library_path`) with its functions' argument types
    set from ``signatures`` (all return void)."""
    lib = ctypes.CDLL(str(verified(library_path(source))))
    for name, args in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = None
    return lib
