"""Logit hosts (FedMKT, FedCoLLM) transfer on P's gold text; an unlabelled public question
(docs/testbed.md: it names a private entity, so P carries no rationale or answer for it) has
none. They run on the labelled picks only, rather than on an empty ``"Answer: "`` target."""

from __future__ import annotations

from dataclasses import replace
from typing import Any


def labelled_only(server: Any, alloc: dict[int, Any], report: Any = None) -> dict[int, Any]:
    """``alloc`` with every unlabelled public id removed (order kept). LaDa's filters and
    ``random_teachable`` never pick one (lada.federation.teachable); a baseline's picks may
    hold some: with a ``report`` (a RoundReport) their number per client goes into
    ``report.distill[k]["unlabelled_dropped"]``, so nothing is dropped silently."""
    by_id = server.by_id
    out = {
        k: replace(a, ids={d: [i for i in ids if by_id[i].answer] for d, ids in a.ids.items()})
        for k, a in alloc.items()
    }
    if report is not None:
        for k, a in alloc.items():
            n = sum(len(ids) for ids in a.ids.values()) - sum(len(v) for v in out[k].ids.values())
            if n:
                report.distill.setdefault(k, {})["unlabelled_dropped"] = n
    return out
