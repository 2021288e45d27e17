"""Killing `lada run` while it pretrains zoo models ends its worker processes too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lada.config.presets import TINY

ROOT = Path(__file__).resolve().parents[1]


def _signals_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT and SIGTERM at their defaults, unblocked, whatever the
    test runner inherited (a shell's background job starts with SIGINT ignored, and an ignored
    signal stays ignored across exec: the child would never see the Ctrl-C this test sends)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _spawned_workers(proc: psutil.Process) -> list[psutil.Process]:
    return [
        c
        for c in proc.children(recursive=True)
        if "multiprocessing" in " ".join(c.cmdline()) and "spawn_main" in " ".join(c.cmdline())
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_killing_a_run_during_pretraining_leaves_no_worker(tmp_path, sig):
    env = {
        **os.environ,
        "LADA_CACHE": str(tmp_path / "cache"),  # empty: the zoo models are pretrained now
        "PYTHONPATH": str(ROOT / "src"),
        "HF_HUB_OFFLINE": "1",
        "LADA_PROGRESS": "0",
    }
    # pretraining long enough to be interrupted, in two worker processes
    overrides = [*TINY, "prepare.llm_steps=100000", "prepare.slm_steps=100000", "prepare.workers=2"]
    cmd = [sys.executable, "-m", "lada.cli", "run", "--out", str(tmp_path / "run"), *overrides]
    run = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_signals_as_in_a_terminal,
    )
    proc = psutil.Process(run.pid)
    everyone: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while not workers:
            assert run.poll() is None, run.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no pretraining worker started"
            time.sleep(0.5)
            workers = _spawned_workers(proc)
        time.sleep(1.0)  # the worker is inside pretraining
        everyone = [*workers, *proc.children(recursive=True)]
        run.send_signal(sig)  # to the run alone (its own session): not to the workers
        run.wait(timeout=60)
        gone, alive = psutil.wait_procs(everyone, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        assert run.returncode != 0
    finally:  # a failing test leaves nothing behind either
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for p in everyone:
            with contextlib.suppress(psutil.Error):
                p.kill()
    # no half-written cache entry: a model folder is complete, or a temporary one
    models = tmp_path / "cache" / "models"
    for folder in models.glob("*") if models.exists() else []:
        assert ".tmp-" in folder.name or (folder / "config.json").exists(), folder


MANAGER_SCRIPT = """
import os, signal, sys, time
from multiprocessing.managers import SyncManager
from lada.utils import workers

start = SyncManager.start
def interrupted_start(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIG)  # Ctrl-C / SIGTERM while the server starts
    start(self, *args, **kwargs)
    print("started", self._process.pid, flush=True)
SyncManager.start = interrupted_start
workers.exit_on_sigterm()
try:
    with workers.spawn_manager() as m:
        time.sleep(30)
except (KeyboardInterrupt, SystemExit) as e:
    print("interrupted after start", type(e).__name__, flush=True)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupt_while_the_manager_starts_waits_for_it_and_ends_it(sig):
    """Interrupted mid-start, a Manager's server would be left running and joined forever at
    exit (the run hangs); spawn_manager holds the signal until the server is up."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    script = MANAGER_SCRIPT.replace("signal.SIG)", f"signal.{sig})")
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_signals_as_in_a_terminal,
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("started") and lines[1].startswith("interrupted after start")
    server = int(lines[0].split()[1])
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == "zombie"
