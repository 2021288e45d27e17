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
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
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
        run.wait(timeout=180)  # generous: a loaded machine ends the workers slowly
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
