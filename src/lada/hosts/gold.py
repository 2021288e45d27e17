"""Logit hosts (FedMKT, FedCoLLM) transfer on P's gold text; an unlabelled public question
(docs/testbed.md: it names a private entity, so P carries no rationale or answer for it) has
none. They run on the labelled picks only, rather than on an empty ``"Answer: "`` target."""

from __future__ import annotations

from dataclasses import replace
from typing import Any


def labelled_only(server: Any, alloc: dict[int, Any]) -> dict[int, Any]:
    """``alloc`` with every unlabelled public id removed (order kept)."""
    by_id = server.by_id
    return {
        k: replace(a, ids={d: [i for i in ids if by_id[i].answer] for d, ids in a.ids.items()})
        for k, a in alloc.items()
    }
