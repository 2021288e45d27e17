"""FedCoLLM's server-side mutual distillation (Fan et al., 2024; spec §6).

After the FedAvg step (:func:`lada.hosts.round_steps.fedavg_step`, unchanged: the clients'
trainable SLM weights are averaged and the average is sent back), the server loads the average
into its own copy of the (homogeneous) SLM architecture and distils on P, both ways, from one
snapshot (both models' top-k logits are computed before either learns):

- the LLM learns with LM + ``fedcollm_kl_weight``·KL over the SLM's top-k logits,
- the averaged SLM with LM + ``fedcollm_kl_weight``·KL over the LLM's top-k logits,

LM = NLL of the gold target, KL = :func:`lada.train.logit_distill.topk_distill_loss` (the same
function as FedMKT's; FedCoLLM distils every sample, no min-CE selection). The distilled SLM
weights are then sent to the clients (``set_weights``). Everything runs on the server: no
logits cross the network, only weights.

``plugin: none``: all of P both ways, no paths. With ``plugin: lada``: (1) each direction's P is
restricted to the union over clients of that direction's picks, (2) both models write their
reasoning paths on the picks (the server holds both) and λ·L_CD on (teacher path, own path)
joins each learner's loss, (3) rewards per client and direction come from the learner's losses
on that client's picks (one averaged SLM is the learner of every S-side filter).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from lada.federation.protocol import SetWeightsIns, Task
from lada.federation.server import LearnerLosses
from lada.hosts.fedavg import FlatState, flatten, load_flat
from lada.utils.seeding import derive_seed, seed_everything


def _union(server: Any, alloc: dict[int, Any], d: str) -> list[str]:
    wanted = {i for a in alloc.values() for i in a.ids.get(d, [])}
    return [i for i in server.public_ids if i in wanted]


def _rows(ids: list[str], picks: list[str]) -> list[int]:
    pos = {pid: j for j, pid in enumerate(ids)}
    return [pos[i] for i in picks]


def server_distill(
    round_idx: int,
    server: Any,
    averaged: FlatState,
    alloc: dict[int, Any],
    directions: tuple[str, ...],
    with_paths: bool,
    llm_paths: dict[str, str] | None = None,
) -> tuple[FlatState, dict[int, dict[str, LearnerLosses]], dict[str, dict[str, int]]]:
    """Mutual distillation of the LLM and the averaged SLM on the picks (see the module doc).

    Returns the distilled SLM's trainable weights, each client's LearnerLosses per direction
    (on its picks) and per direction the numbers of samples distilled and of L_CD pairs."""
    from lada.eval.generate import generate_paths
    from lada.hosts.fedmkt import learn_from_logits
    from lada.train.logit_distill import check_same_vocab, compute_topk, vocab_fingerprint

    slm, slm_tok = server.slm()
    load_flat(slm, averaged)
    d = server.settings.distill
    slm_name = server.settings.slm_name
    slm_vocab = vocab_fingerprint(slm_tok)
    check_same_vocab(server.model_name, server.vocab(), slm_name, slm_vocab)
    s_ids = _union(server, alloc, "S") if "S" in directions else []
    l_ids = _union(server, alloc, "L") if "L" in directions else []

    def gold(ids: list[str]) -> tuple[list[str], list[str]]:
        samples = [server.by_id[i] for i in ids]
        return [s.prompt() for s in samples], [s.target() for s in samples]

    # one snapshot: both teachers' logits before either model learns
    llm_top = compute_topk(
        server.model,
        server.tokenizer,
        s_ids,
        *gold(s_ids),
        d.top_k,
        d.llm_optim.max_length,
        server.model_name,
        vocab=server.vocab(),
    )
    slm_top = compute_topk(
        slm,
        slm_tok,
        l_ids,
        *gold(l_ids),
        d.top_k,
        d.slm_optim.max_length,
        slm_name,
        vocab=slm_vocab,
    )
    llm_p: dict[str, str] = {}
    slm_p: dict[str, str] = {}
    if with_paths:
        both = [i for i in server.public_ids if i in set(s_ids) | set(l_ids)]
        known = dict(llm_paths or {})
        llm_p = {**known, **server.generate(round_idx, [i for i in both if i not in known])}
        seed_everything(derive_seed(server.settings.seed, "server", round_idx, "slm_generate"))
        texts = generate_paths(
            slm,
            slm_tok,
            gold(both)[0],
            max_new_tokens=d.max_new_tokens,
            batch_size=d.gen_batch_size,
        )
        slm_p = dict(zip(both, texts, strict=True))

    outcomes = {}
    stats = {side: {"distilled": 0, "pairs": 0} for side in ("S", "L")}
    for side, ids, model, tok, teacher, teach_p, own_p, optim, name, vocab in (
        ("S", s_ids, slm, slm_tok, llm_top, llm_p, slm_p, d.slm_optim, slm_name, slm_vocab),
        (
            "L",
            l_ids,
            server.model,
            server.tokenizer,
            slm_top,
            slm_p,
            llm_p,
            d.llm_optim,
            server.model_name,
            server.vocab(),
        ),
    ):
        if not ids:
            continue
        seed = derive_seed(server.settings.seed, "server", round_idx, "fedcollm", side)
        seed_everything(seed)
        outcomes[side], stats[side]["distilled"] = learn_from_logits(
            model,
            tok,
            [server.by_id[i] for i in ids],
            {0: teacher},
            [teach_p[i] for i in ids] if with_paths else None,
            [own_p[i] for i in ids] if with_paths else None,
            d,
            replace(optim, seed=seed),
            learner=name,
            vocab=vocab,
            lm_weight=1.0,
            kd_weight=d.fedcollm_kl_weight,
            selection="all",
        )
        stats[side]["pairs"] = outcomes[side].num_pairs

    losses: dict[int, dict[str, LearnerLosses]] = {}
    for k, a in alloc.items():
        for side, ids in (("S", s_ids), ("L", l_ids)):
            if side not in outcomes:
                continue
            picks = list(a.ids.get(side, []))
            rows = _rows(ids, picks)
            out = outcomes[side]
            losses.setdefault(k, {})[side] = LearnerLosses(
                ids=picks,
                loss_before=out.loss_before[rows],
                loss_after=out.loss_after[rows],
                margin=out.margin[rows],
                trained=None if out.trained is None else out.trained[rows],
            )
    from lada.utils.model_state import trainable_state

    return flatten(trainable_state(slm)), losses, stats


def transfer(
    round_idx: int,
    server: Any,
    transport: Any,
    rep: Any,
    alloc: dict[int, Any],
    directions: tuple[str, ...],
    rewards: bool,
    with_paths: bool,
    averaged: FlatState | None,
    llm_paths: dict[str, str] | None = None,
) -> None:
    """The round's FedCoLLM step after FedAvg and allocation: server-side distillation on the
    picks, rewards, and the distilled SLM weights sent to the clients."""
    from lada.federation.round import Phase, ok_replies
    from lada.hosts.gold import labelled_only

    alloc = labelled_only(server, alloc)  # gold text only (docs/testbed.md)
    if averaged is None or not alloc:
        return
    with Phase(rep, "distill_server"):
        distilled, losses, stats = server_distill(
            round_idx, server, averaged, alloc, directions, with_paths, llm_paths
        )
    with Phase(rep, "rewards"):
        for k, per in losses.items():
            for side in ("S", "L"):
                if side not in per:
                    continue
                ll = per[side]
                if rewards:
                    rep.rewards.setdefault(k, {})[side] = server.reward(k, side, ll)
                key = "slm" if side == "S" else "llm"
                rep.distill.setdefault(k, {}).update(
                    {
                        f"{key}_loss_before": float(np.mean(ll.loss_before))
                        if len(ll.ids)
                        else float("nan"),
                        f"{key}_loss_after": float(np.mean(ll.loss_after))
                        if len(ll.ids)
                        else float("nan"),
                        f"{key}_pairs": stats[side]["pairs"],
                        f"{key}_distilled_total": stats[side]["distilled"],
                    }
                )
    with Phase(rep, "set_weights"):
        ins = {
            k: SetWeightsIns(round_idx, distilled.names, distilled.shapes_json, distilled.flat)
            for k in alloc
        }
        ok_replies(rep, Task.SET_WEIGHTS, transport.broadcast(round_idx, Task.SET_WEIGHTS, ins))


__all__ = ["server_distill", "transfer"]
