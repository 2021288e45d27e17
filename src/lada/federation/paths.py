"""The exchange of reasoning paths (spec §5 steps 3-4): the plain host's public transfer and
LaDa's path step in every host.

SLM k writes paths for its LLM-side picks, the LLM for every pick; then each SLM learns the
LLM's paths (task ``distill``: L_host + λ·L_CD on the client) and the LLM learns the SLMs'
(:meth:`ServerRole.learn`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lada.federation.context import Learned, Picks, RoundContext
from lada.federation.protocol import DistillIns, DistillRes, GenerateIns, PathsRes, Task
from lada.federation.server import LearnerLosses


@dataclass
class Paths:
    slm: dict[int, PathsRes]  # SLM k's paths for its LLM-side picks (the clients that answered)
    llm: dict[str, str]  # the LLM's teacher paths by public id ("" where it abstains)
    # the LLM's own paths on the LLM-side picks, as a learner (L_CD's rejected side), written
    # also where it abstains as a teacher (an unlabelled question)
    llm_own: dict[str, str] = field(default_factory=dict)

    def own(self) -> dict[str, str]:
        """The LLM's own path per public id: its teacher path, or the learner's one."""
        return {**self.llm, **{i: p for i, p in self.llm_own.items() if p}}


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
        own: dict[str, str] = {}
        if "L" in directions and llm_needs_own_paths(rnd.server.settings.distill):
            l_ids = sorted({i for a in alloc.values() for i in a.ids["L"]})
            own = {i: known[i] for i in l_ids if known.get(i)}
            own.update(rnd.server.own_paths(rnd.round, [i for i in l_ids if i not in own]))
    return Paths(slm_paths, known, own)


def llm_needs_own_paths(d: object) -> bool:
    """Whether the LLM's step needs its own paths (L_CD's other side, or the correctness
    preference): not with λ = 0 and the role preference."""
    return not (getattr(d, "lambda_cd", 0.0) == 0 and getattr(d, "preference", "role") == "role")


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
        llm = rnd.server.learn(rnd.round, teach, paths.own()) if "L" in directions else {}
    learned = learned_from_replies(distilled, llm)
    attach_teacher_paths(learned, paths)
    return learned


def learned_from_replies(
    distilled: dict[int, DistillRes], llm: dict[int, LearnerLosses]
) -> Learned:
    """The SLMs' losses from their ``distill``-like replies (S, in reply order), then the LLM's
    per client (L); each learner's L_CD pair count (``slm_pairs`` / ``llm_pairs``)."""
    out = Learned()
    for k, r in distilled.items():
        trained = r.trained if len(r.trained) else None  # which picks entered the loss
        losses = LearnerLosses(list(r.ids), r.loss_before, r.loss_after, r.margin, trained)
        losses.num_pairs = int(r.num_pairs)
        out.losses.append((k, "S", losses))
    out.losses += [(k, "L", losses) for k, losses in llm.items()]
    return out


def attach_teacher_paths(learned: Learned, paths: Paths) -> None:
    """Each learner's teacher path per pick (the LLM's for S, SLM k's for L) into its losses:
    learning/round_NNN.json keeps them, and a pick whose teacher abstained (an empty path) is
    never rewarded from its loss (lada.filter.rewarding)."""
    for k, side, losses in learned.losses:
        if side == "S":
            teacher = paths.llm
        elif k in paths.slm:
            teacher = dict(zip(paths.slm[k].ids, paths.slm[k].paths, strict=True))
        else:
            teacher = {}
        losses.paths = [teacher.get(i, "") for i in losses.ids]


__all__ = [
    "Paths",
    "attach_teacher_paths",
    "exchange_paths",
    "learn_paths",
    "learned_from_replies",
    "llm_needs_own_paths",
]
