"""Compile and load LaDa's C kernels (``lada/accel/kernels/*.c``) on the machine they run on.

A source is compiled once per machine, source text and compiler with the system C compiler
(``$CC``, else ``cc``; :data:`FLAGS`: ``-O3 -march=native -ffp-contract=off -fopenmp``) into
``$LADA_CACHE/kernels/<key>/<name>.so`` and loaded with ctypes (OpenMP then runs on torch's own
libgomp: the same soname, loaded first, one thread pool). Users of a library check it against
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
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

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
    and CPU lives (built, ~1 s, if missing; concurrent builders leave one complete file)."""
    from lada.provision.prepare import cache_root

    cc = _compiler()
    headers = [h.read_text() for h in sorted(source.parent.glob("*.h"))]  # what it may include
    key = hashlib.sha256(
        "\n".join([source.read_text(), *headers, cc, " ".join(FLAGS), _cpu_key()]).encode()
    ).hexdigest()[:16]
    path = cache_root() / "kernels" / key / f"{source.stem}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / path.name
        cmd = [cc, *FLAGS, "-shared", "-o", str(out), str(source), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KernelBuildError(
                f"compiling {source.name} failed ({' '.join(cmd)}):\n{done.stderr.strip()}"
            )
        os.replace(out, path)  # atomic
    return path


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
    logging that reason once where it does (when ``say``), unless the environment sets
    ``LADA_KERNELS=0`` (the user's switch: PyTorch ops everywhere)."""
    if kernels is None and os.environ.get("LADA_KERNELS") == "0":
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
    lib = ctypes.CDLL(str(library_path(source)))
    for name, args in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = None
    return lib
