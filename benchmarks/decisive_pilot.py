"""Pilot probes for the decisive suite's real testbed (a design aid, not a result).

Measures one piece of the premise (:mod:`lada.bench.premise`) for candidate settings, on the
real testbed's seed-0 split, 30 probe questions per cell, one thread:

* ``llm``: the warmed-up LLM on client 0's general 1-4-step questions (teacher spread);
* ``0`` / ``1``: SLM k after local training on its private data, on its 1- and 2-step
  private questions (knowledge gap).

    python benchmarks/decisive_pilot.py SPLIT_DIR llm "server.warmup={samples: 256, steps: [1, 2]}"
    python benchmarks/decisive_pilot.py SPLIT_DIR 0 "local.optim.epochs=8"

SPLIT_DIR: the split `lada bench --suite decisive --premise` made (DIR/premise/real/data).
Overrides apply on top of ``lada.bench.decisive.REAL_OVERRIDES``. Prints one line: the
settings, seconds, and accuracy % per cell (g = general, p = private, then the steps).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path


def main(split: str, what: str, extra: list[str]) -> None:
    import torch

    from lada.bench.decisive import HOST, REAL_OVERRIDES
    from lada.config import load_config
    from lada.data.synthetic import make_world
    from lada.eval.accuracy import evaluate
    from lada.eval.gaps import probe_cells, probe_sets
    from lada.runner.setup import load_run_data, model_loader
    from lada.train.sft import sft
    from lada.utils.seeding import derive_seed, seed_everything

    cfg = load_config(None, [*REAL_OVERRIDES, "seed=0", f"host={HOST}", "plugin=none", *extra])
    cfg.threads = 1
    torch.set_num_threads(1)
    data = load_run_data(cfg, Path(split), record=False)
    world = make_world(data.world_cfg)
    gen = {"batch_size": cfg.eval.batch_size, "max_new_tokens": cfg.eval.max_new_tokens}
    t0 = time.time()
    if what == "llm":
        probes = [
            s
            for s in probe_sets(world, data.domains[0], 30, (1, 2, 3, 4), cfg.seed)
            if s.meta["kind"] == "general"
        ]
        model, tok = model_loader(cfg.server, cfg, data.world_cfg, role="server")()
        client, name, stage = 0, "llm", "base"
    else:
        k = int(what)
        probes = [
            s
            for s in probe_sets(world, data.domains[k], 30, (1, 2), cfg.seed)
            if s.meta["kind"] == "private"
        ]
        model, tok = model_loader(cfg.clients[k], cfg, data.world_cfg, role=f"client_{k}")()
        seed = derive_seed(cfg.seed, "gaps", "local_train", k)  # as the premise's local stage
        seed_everything(seed)
        train = data.train[k]
        optim = replace(cfg.local.optim, seed=seed)
        sft(model, tok, [s.prompt() for s in train], [s.target() for s in train], optim)
        client, name, stage = k, "slm", "local"
    records = evaluate(model, tok, probes, **gen).records
    model_name = cfg.server.model if name == "llm" else cfg.clients[client].model
    cells = probe_cells(client, name, model_name, stage, probes, records)
    acc = [(c.kind[0] + str(c.num_steps), round(100 * c.accuracy)) for c in cells]
    print(what, extra, f"{time.time() - t0:.0f}s", acc, flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
