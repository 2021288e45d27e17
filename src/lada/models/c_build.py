"""Compile and load LaDa's C kernels (``lada/models/kernels/*.c``) on the machine they run on.

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
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

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
    from lada.models.prepare import cache_root

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


def load_library(source: Path, signatures: dict[str, list[type]]) -> ctypes.CDLL:
    """The compiled ``source`` (see :func:`library_path`) with its functions' argument types
    set from ``signatures`` (all return void)."""
    lib = ctypes.CDLL(str(library_path(source)))
    for name, args in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = None
    return lib
