"""The exchange of reasoning paths (spec §5 steps 3-4): the plain host's public transfer and
LaDa's path step in every host.

SLM k writes paths for its LLM-side picks, the LLM for every pick; then each SLM learns the
LLM's paths (task ``distill``: L_host + λ·L_CD on the client) and the LLM learns the SLMs'
(:meth:`ServerRole.learn`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lada.federation.context import Learned, Picks, RoundContext
from lada.federation.protocol import DistillIns, DistillRes, GenerateIns, PathsRes, Task
from lada.federation.server import LearnerLosses


@dataclass
class Paths:
    slm: dict[int, PathsRes]  # SLM k's paths for its LLM-side picks (the clients that answered)
    llm: dict[str, str]  # the LLM's paths by public id


def exchange_paths(rnd: RoundContext, picks: Picks) -> Paths:
    """Reasoning paths for the picks: SLM k's for its LLM-side picks (reused when the
    allocation already generated them), the LLM's for every pick."""
    alloc, directions = picks.alloc, picks.directions
    with rnd.phase("paths"):
        have = dict(picks.slm_paths)
        slm_paths: dict[int, PathsRes] = {}
        if "L" in directions:
            for k, r in have.items():
                if k in alloc:
                    pos = {pid: j for j, pid in enumerate(r.ids)}
                    ids = alloc[k].ids["L"]
                    slm_paths[k] = PathsRes(ids=list(ids), paths=[r.paths[pos[i]] for i in ids])
            ask = {k: GenerateIns(rnd.round, a.ids["L"]) for k, a in alloc.items() if k not in have}
            if ask:
                slm_paths.update(rnd.broadcast(Task.GENERATE, ask))
        else:
            slm_paths = {k: PathsRes(ids=[], paths=[]) for k in alloc}
        known = dict(picks.llm_paths)
        wanted = sorted({i for a in alloc.values() for d in directions for i in a.ids[d]})
        missing = [i for i in wanted if i not in known]
        known.update(rnd.server.generate(rnd.round, missing))
    return Paths(slm_paths, known)


def learn_paths(rnd: RoundContext, picks: Picks, paths: Paths) -> Learned:
    """Each SLM learns the LLM's paths on its SLM-side picks, the LLM the SLMs' paths on their
    LLM-side picks; the learners' losses on their picks."""
    directions = picks.directions
    with rnd.phase("distill_slm"):
        ins = {
            k: DistillIns(rnd.round, a.ids["S"], [paths.llm[i] for i in a.ids["S"]])
            for k, a in picks.alloc.items()
            if k in paths.slm and "S" in directions
        }
        distilled: dict[int, DistillRes] = rnd.broadcast(Task.DISTILL, ins)
    with rnd.phase("distill_llm"):
        teach = {k: (r.ids, r.paths) for k, r in paths.slm.items()}
        llm = rnd.server.learn(rnd.round, teach, paths.llm) if "L" in directions else {}
    learned = learned_from_replies(distilled, llm)
    for k, side, losses in learned.losses:  # the teacher paths, for learning/round_NNN.json
        if side == "S":
            teacher = paths.llm
        else:
            teacher = dict(zip(paths.slm[k].ids, paths.slm[k].paths, strict=True))
        losses.paths = [teacher.get(i, "") for i in losses.ids]
    return learned


def learned_from_replies(
    distilled: dict[int, DistillRes], llm: dict[int, LearnerLosses]
) -> Learned:
    """The SLMs' losses from their ``distill``-like replies (S, in reply order), then the LLM's
    per client (L); each SLM's L_CD pair count as ``slm_pairs``."""
    out = Learned()
    for k, r in distilled.items():
        trained = r.trained if len(r.trained) else None  # which picks entered the loss
        losses = LearnerLosses(list(r.ids), r.loss_before, r.loss_after, r.margin, trained)
        out.losses.append((k, "S", losses))
        out.fields[k] = {"slm_pairs": r.num_pairs}
    out.losses += [(k, "L", losses) for k, losses in llm.items()]
    return out


__all__ = ["Paths", "exchange_paths", "learn_paths", "learned_from_replies"]
