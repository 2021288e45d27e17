"""``report.to: [tensorboard]``: the run as TensorBoard event files in ``RUN/tensorboard/``.

Written per committed round (a round a kill cuts short is never logged, so a resumed run logs
each round once):

* ``loss/slm_K_local``, ``loss/slm_K_distill``, ``loss/llm_distill``: every optimiser step's
  loss (x: that series' step count over the run; roles training in this process only: the
  in-process engine logs all, Flower's actors none);
* ``accuracy/slm_K``, ``accuracy/llm_on_client_K``, ``accuracy/slm_mean``,
  ``accuracy/llm_mean``: per round (x: round; 0 = the base models), fractions 0..1;
* ``picks/K_S``, ``picks/K_L`` (how many) and ``picks/round`` (text: the picked public ids),
  ``reward/K_S``, ``reward/K_L``: each filter's picks and mean reward per round.

``tensorboard --logdir RUN/tensorboard`` shows them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lada.utils import steplog


def check_report(cfg: Any) -> None:
    """A configured logger's package is installed (before the run directory is made)."""
    from lada.config import ConfigError

    if "tensorboard" in cfg.report.to:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                "config key 'report.to' = [tensorboard]: the tensorboard package is not "
                "installed (pip install 'lada[tensorboard]')"
            ) from None


class TensorBoardReport:
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))
        counts = self.dir / "steps.json"  # each loss series' steps so far (resume continues)
        self.steps: dict[str, int] = json.loads(counts.read_text()) if counts.is_file() else {}
        self.pending: list[tuple[str, list[float]]] = []
        steplog.set_sink(lambda tag, losses: self.pending.append((tag, losses)))

    def log_round(self, run_dir: Path, record: dict[str, Any]) -> None:
        from lada.utils.files import atomic_write_json

        w, t = self.writer, record["round"]
        for tag, losses in self.pending:
            start = self.steps.get(tag, 0)
            for i, loss in enumerate(losses):
                w.add_scalar(tag, loss, start + i + 1)
            self.steps[tag] = start + len(losses)
        self.pending.clear()
        for k, acc in record["slm_accuracy"].items():
            w.add_scalar(f"accuracy/slm_{k}", acc, t)
        for k, acc in record["llm_accuracy"].items():
            w.add_scalar(f"accuracy/llm_on_client_{k}", acc, t)
        for key in ("slm_accuracy_mean", "llm_accuracy_mean"):
            if record.get(key) is not None:
                w.add_scalar(f"accuracy/{key.split('_')[0]}_mean", record[key], t)
        for k, per in record["selected"].items():
            for d, n in per.items():
                w.add_scalar(f"picks/{k}_{d}", n, t)
        for k, per in record["mean_reward"].items():
            for d, r in per.items():
                if r is not None:
                    w.add_scalar(f"reward/{k}_{d}", r, t)
        picked = run_dir / "selections" / f"round_{t:03d}.json"
        if picked.is_file():
            w.add_text("picks/round", f"```\n{picked.read_text()}\n```", t)
        w.flush()
        atomic_write_json(self.dir / "steps.json", self.steps)

    def close(self) -> None:
        steplog.set_sink(None)
        self.writer.close()


def open_report(cfg: Any, run_dir: Path) -> TensorBoardReport | None:
    """The run's logger (None when ``report.to`` names none)."""
    return TensorBoardReport(run_dir) if "tensorboard" in cfg.report.to else None
