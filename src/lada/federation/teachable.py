"""Which public samples each teacher will teach, known before any filter scores (ours).

A public sample that its teacher will not teach is not a low-learnability sample: it leaves the
candidate set before the filter scores (``filter.mask: teachable``), per learner and direction,
so the filter ranks learnability among what can be taught. A teacher will not teach a sample
when

- it abstains (an empty path: ``distill.llm_teaches`` for the LLM, ``distill.slm_teaches``'s
  knowledge boundary and self-consistency for SLM k, :mod:`lada.train.boundary`), or
- its path misses P's gold answer where P has one and ``distill.unverified=skip`` (the learner
  would not learn it), or
- the host's own transfer needs P's gold text (a logit host: FedMKT, FedCoLLM) and the
  sample has no label.

Each teacher announces this by writing its paths for the eligible samples of P up front: the
LLM on the server (direction S), SLM k through the protocol's ``generate`` task (direction L;
an empty path is an abstention). These are the paths the round's exchange then uses, so a
pick's teacher path is exactly the one the mask judged. ``filter.mask: none`` skips the
generation: every eligible sample is a candidate.

The same masks serve LaDa's filters and the ``random_teachable`` control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lada.federation.protocol import GenerateIns, PathsRes, Task


@dataclass
class Teachable:
    """Per client k and direction, a bool mask over P (``server.public_ids`` order): the
    candidates; and the teachers' paths written to find them (reused by the exchange)."""

    masks: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    llm_paths: dict[str, str] = field(default_factory=dict)  # the LLM's teacher paths by id
    slm_paths: dict[int, PathsRes] = field(default_factory=dict)  # SLM k's paths (all asked)
    # a host whose SLM-side teacher lives on the server (FedCoLLM's averaged SLM): its paths
    server_slm_paths: dict[str, str] = field(default_factory=dict)

    def masked(self, k: int) -> dict[str, int]:
        """Per direction, how many samples of P left client k's candidates."""
        return {d: int((~m).sum()) for d, m in self.masks.get(k, {}).items()}


def taught(samples: Sequence[Any], paths: Sequence[str], verify: bool) -> np.ndarray:
    """Bool per sample: the teacher's path is not empty and, with ``verify``, reaches the
    sample's gold answer where it has one (:func:`lada.train.distill.verified_mask`)."""
    from lada.train.distill import verified_mask

    ok = np.array([bool(p) for p in paths], dtype=bool)
    if verify and len(samples):
        ok &= verified_mask(samples, paths)
    return ok


def eligible(server: Any, needs_label: bool) -> np.ndarray:
    """Bool over P: samples the host can transfer at all (a labelled one when it transfers P's
    gold text)."""
    if not needs_label:
        return np.ones(len(server.public_ids), dtype=bool)
    return np.array([bool(s.answer) for s in server.public], dtype=bool)


def teachable(
    rnd: Any,
    directions: Sequence[str],
    needs_label: bool = False,
    generate: bool = True,
    slm_on_server: bool = False,
) -> Teachable:
    """Every alive pair's candidates for ``directions`` (``rnd``: the RoundContext).

    ``generate`` False (``filter.mask: none``): the eligible samples, no paths written.
    ``slm_on_server``: direction L's teacher is the server's copy of the SLM
    (``ServerRole.slm``, loaded by the host beforehand), which never abstains; its paths are
    verified like any other. A client that fails ``generate`` is left out (it sits out the
    round's exchange)."""
    server = rnd.server
    ids = list(server.public_ids)
    base = eligible(server, needs_label)
    asked = [i for i, b in zip(ids, base, strict=True) if b]
    verify = server.settings.distill.unverified == "skip"
    out = Teachable(masks={k: {} for k in rnd.alive})

    def mask_of(paths: dict[str, str]) -> np.ndarray:
        return base & taught(server.public, [paths.get(i, "") for i in ids], verify)

    if "S" in directions:
        if generate:
            out.llm_paths = server.generate(rnd.round, asked)  # "" where the LLM abstains
            m = mask_of(out.llm_paths)
        else:
            m = base.copy()
        for k in rnd.alive:
            out.masks[k]["S"] = m
    if "L" in directions:
        if not generate:
            for k in rnd.alive:
                out.masks[k]["L"] = base.copy()
        elif slm_on_server:
            out.server_slm_paths = server_slm_paths(server, rnd.round, asked)
            m = mask_of(out.server_slm_paths)
            for k in rnd.alive:
                out.masks[k]["L"] = m
        else:
            ins = {k: GenerateIns(rnd.round, asked) for k in rnd.alive}
            got: dict[int, PathsRes] = rnd.broadcast(Task.GENERATE, ins)
            for k, r in got.items():
                out.slm_paths[k] = r
                out.masks[k]["L"] = mask_of(dict(zip(r.ids, r.paths, strict=True)))
    out.masks = {k: m for k, m in out.masks.items() if set(m) >= set(directions)}
    return out


def server_slm_paths(server: Any, round_idx: int, ids: list[str]) -> dict[str, str]:
    """The server's copy of the SLM writes its paths for ``ids`` (seeded per round)."""
    from lada.accel import generator
    from lada.utils.seeding import derive_seed, seed_everything

    if not ids:
        return {}
    slm, tok = server.slm()
    d = server.settings.distill
    seed_everything(derive_seed(server.settings.seed, "server", round_idx, "slm_generate"))
    texts = generator(slm, tok).paths(
        [server.by_id[i].prompt() for i in ids],
        max_new_tokens=d.max_new_tokens,
        batch_size=d.gen_batch_size,
    )
    return dict(zip(ids, texts, strict=True))


__all__ = ["Teachable", "eligible", "server_slm_paths", "taught", "teachable"]
