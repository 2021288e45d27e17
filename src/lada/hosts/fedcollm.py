"""FedCoLLM's server-side mutual distillation (Fan et al., 2024; spec §6).

After the FedAvg step (:func:`fedavg_step`, unchanged: the clients'
trainable SLM weights are averaged and the average is sent back), the server loads the average
into its own copy of the (homogeneous) SLM architecture and distils on P, both ways, from one
snapshot (both models' top-k logits are computed before either learns):

- the LLM learns with LM + ``hosts.fedcollm.kl_weight``·KL over the SLM's top-k logits,
- the averaged SLM with LM + ``hosts.fedcollm.kl_weight``·KL over the LLM's top-k logits,

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

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from lada.federation.host import Host, Learned, Picks, RoundContext, bind_handlers
from lada.federation.protocol import (
    GetWeightsIns,
    Payload,
    SetWeightsIns,
    SetWeightsRes,
    Task,
    WeightsRes,
)
from lada.federation.server import LearnerLosses
from lada.hosts.fedavg import FlatState, flatten, load_flat, robust_fedavg
from lada.hosts.fedcollm_config import FedCoLLMConfig
from lada.hosts.registry import register_host
from lada.hosts.vocabulary import check_shared_vocabulary
from lada.utils.seeding import derive_seed, seed_everything


def _union(server: Any, alloc: dict[int, Any], d: str) -> list[str]:
    wanted = {i for a in alloc.values() for i in a.ids.get(d, [])}
    return [i for i in server.public_ids if i in wanted]


def _rows(ids: list[str], picks: list[str]) -> list[int]:
    pos = {pid: j for j, pid in enumerate(ids)}
    return [pos[i] for i in picks]


def fedavg_step(rnd: RoundContext, settings: FedCoLLMConfig | None = None) -> FlatState | None:
    """Clients upload their trainable SLM weights, the server averages them (weighted by
    private sample counts, or robustly: ``hosts.fedcollm.aggregate`` and the clipping
    settings, :func:`lada.hosts.fedavg.robust_fedavg`) and sends the average back to every
    client that uploaded."""
    got: dict[int, WeightsRes] = rnd.broadcast(
        Task.GET_WEIGHTS, {k: GetWeightsIns(rnd.round) for k in rnd.alive}
    )
    if not got:
        return None
    states = [FlatState(list(r.names), json.loads(r.shapes), r.flat) for r in got.values()]
    d = settings or FedCoLLMConfig()
    reference = None
    if d.max_update_norm is not None:  # the weights the clients were last sent
        from lada.utils.model_state import trainable_state

        reference = flatten(trainable_state(rnd.server.slm()[0])).flat
    avg = robust_fedavg(
        states,
        [r.num_samples for r in got.values()],
        d.aggregate,
        d.trim,
        d.max_sample_ratio,
        d.max_update_norm,
        reference,
    )
    ins = {k: SetWeightsIns(rnd.round, avg.names, avg.shapes_json, avg.flat) for k in got}
    rnd.broadcast(Task.SET_WEIGHTS, ins)
    return avg


def server_distill(
    rnd: RoundContext, averaged: FlatState, picks: Picks, settings: FedCoLLMConfig | None = None
) -> tuple[FlatState, dict[int, dict[str, LearnerLosses]], dict[str, dict[str, int]]]:
    """Mutual distillation of the LLM and the averaged SLM on the picks (see the module doc),
    with FedCoLLM's ``settings`` (``hosts.fedcollm``; None: the paper's).

    Returns the distilled SLM's trainable weights, each client's LearnerLosses per direction
    (on its picks) and per direction the numbers of samples distilled and of L_CD pairs."""
    from lada.federation.teachable import server_slm_paths
    from lada.hosts.fedmkt import Learner, LogitLoss, learn_from_logits, server_learner
    from lada.train.logit_distill import check_same_vocab, topk_on_gold, vocab_fingerprint

    server, alloc, directions = rnd.server, picks.alloc, picks.directions
    slm, slm_tok = server.slm()
    load_flat(slm, averaged)
    d = server.settings.distill
    settings = settings or FedCoLLMConfig()
    slm_learner = Learner(slm, slm_tok, server.settings.slm_name, vocab_fingerprint(slm_tok))
    llm_learner = server_learner(server)
    check_same_vocab(llm_learner.name, llm_learner.vocab, slm_learner.name, slm_learner.vocab)
    s_ids = _union(server, alloc, "S") if "S" in directions else []
    l_ids = _union(server, alloc, "L") if "L" in directions else []

    def samples(ids: list[str]) -> list[Any]:
        return [server.by_id[i] for i in ids]

    # one snapshot: both teachers' logits before either model learns
    llm_top = topk_on_gold(
        server.model,
        server.tokenizer,
        samples(s_ids),
        settings.top_k,
        d.llm_optim.max_length,
        llm_learner.name,
        vocab=llm_learner.vocab,
    )
    slm_top = topk_on_gold(
        slm,
        slm_tok,
        samples(l_ids),
        settings.top_k,
        d.slm_optim.max_length,
        slm_learner.name,
        vocab=slm_learner.vocab,
    )
    llm_p: dict[str, str] = {}
    slm_p: dict[str, str] = {}
    if picks.with_paths:
        both = [i for i in server.public_ids if i in set(s_ids) | set(l_ids)]
        known = dict(picks.llm_paths)
        llm_p = {**known, **server.generate(rnd.round, [i for i in both if i not in known])}
        slm_p = {i: p for i, p in picks.server_slm_paths.items() if i in set(both)}
        slm_p.update(server_slm_paths(server, rnd.round, [i for i in both if i not in slm_p]))

    outcomes = {}
    stats = {side: {"distilled": 0, "pairs": 0} for side in ("S", "L")}
    loss = LogitLoss(1.0, settings.kl_weight, "all")
    for side, ids, learner, teacher, teach_p, own_p, optim in (
        ("S", s_ids, slm_learner, llm_top, llm_p, slm_p, d.slm_optim),
        ("L", l_ids, llm_learner, slm_top, slm_p, llm_p, d.llm_optim),
    ):
        if not ids:
            continue
        seed = derive_seed(server.settings.seed, "server", rnd.round, "fedcollm", side)
        seed_everything(seed)
        outcomes[side], stats[side]["distilled"] = learn_from_logits(
            learner,
            samples(ids),
            {0: teacher},
            d,
            replace(optim, seed=seed),
            paths=([teach_p[i] for i in ids], [own_p[i] for i in ids])
            if picks.with_paths
            else None,
            loss=loss,
        )
        stats[side]["pairs"] = outcomes[side].num_pairs

    losses: dict[int, dict[str, LearnerLosses]] = {}
    for k, a in alloc.items():
        for side, ids in (("S", s_ids), ("L", l_ids)):
            if side not in outcomes:
                continue
            chosen = list(a.ids.get(side, []))
            ll = LearnerLosses.rows(outcomes[side], chosen, _rows(ids, chosen))
            if picks.with_paths:  # the teacher's path of each pick (never rewarded when empty)
                teacher = llm_p if side == "S" else slm_p
                ll.paths = [teacher.get(i, "") for i in chosen]
            losses.setdefault(k, {})[side] = ll
    from lada.utils.model_state import trainable_state

    return flatten(trainable_state(slm)), losses, stats


@register_host
class FedCoLLMHost(Host):
    """FedCoLLM: FedAvg of the homogeneous SLMs after the local step, then server-side mutual
    distillation of the LLM and the averaged SLM on P, whose result goes back to the clients."""

    name = "fedcollm"
    compares_logits = True
    slm_learns_paths = False  # its own logit step (no path step, no private rehearsal)
    homogeneous_slms = True
    server_holds_slm = True
    transfers_gold = True  # logits on P's gold texts: unlabelled samples are no candidates
    settings_class = FedCoLLMConfig  # hosts.fedcollm
    settings: FedCoLLMConfig

    def check(self, cfg: Any) -> None:
        check_shared_vocabulary(cfg)  # homogeneous SLMs: FedCoLLMConfig.run_problems

    def after_local(self, rnd: RoundContext) -> None:
        """FedAvg; a client that failed it sits out, and with nothing averaged nobody gets a
        server-side distillation back."""
        if not rnd.alive:
            return
        with rnd.phase("fedavg"):
            rnd.host_state = fedavg_step(rnd, self.settings)
        rnd.drop_missed()
        if rnd.host_state is None:
            rnd.alive = []

    def teachable(self, rnd: RoundContext, directions: tuple[str, ...], generate: bool) -> Any:
        """The LLM teaches the averaged SLM (direction S) and the server's averaged SLM teaches
        the LLM (L): both write their paths on the server, after the FedAvg step."""
        from lada.federation.teachable import teachable

        if generate and "L" in directions and rnd.host_state is not None:
            load_flat(rnd.server.slm()[0], rnd.host_state)
        on_server = rnd.host_state is not None
        return teachable(
            rnd, directions, needs_label=True, generate=generate and on_server, slm_on_server=True
        )

    def exchange(self, rnd: RoundContext, picks: Picks) -> FlatState | None:
        """Nothing crosses the network: both models are on the server; the FedAvg average is
        what the learning step starts from."""
        return rnd.host_state

    def learn(self, rnd: RoundContext, picks: Picks, averaged: FlatState | None) -> Learned:
        """Server-side distillation on the picks, then the distilled SLM weights to the
        clients; the learners' losses per client and direction (S then L per client)."""
        from lada.hosts.gold import labelled_only

        learned = Learned()
        picks = replace(
            picks, alloc=labelled_only(rnd.server, picks.alloc, rnd.report)
        )  # gold text only
        if averaged is None or not picks.alloc:
            return learned
        with rnd.phase("distill_server"):
            distilled, losses, stats = server_distill(rnd, averaged, picks, self.settings)
        for k, per in losses.items():
            for side in ("S", "L"):
                if side not in per:
                    continue
                learned.losses.append((k, side, per[side]))
                key = "slm" if side == "S" else "llm"
                learned.fields.setdefault(k, {}).update(
                    {f"{key}_distilled_total": stats[side]["distilled"]}
                )
        with rnd.phase("set_weights"):
            ins = {
                k: SetWeightsIns(rnd.round, distilled.names, distilled.shapes_json, distilled.flat)
                for k in picks.alloc
            }
            rnd.broadcast(Task.SET_WEIGHTS, ins)
        return learned

    def expected_reply(self, server: Any, task: Any) -> Any:
        """Every GET_WEIGHTS reply has the layout of the server's copy of the SLM."""
        if task == Task.GET_WEIGHTS:
            from lada.federation.validation import Expected
            from lada.utils.model_state import trainable_state

            state = flatten(trainable_state(server.slm()[0]))
            shapes = tuple(tuple(int(d) for d in s) for s in json.loads(state.shapes_json))
            return Expected(weight_names=tuple(state.names), weight_shapes=shapes)
        return None

    # ---- the client side ----------------------------------------------------------------

    def client_handlers(self, role: Any) -> Mapping[str, Any]:
        return bind_handlers(
            role, {Task.GET_WEIGHTS: client_get_weights, Task.SET_WEIGHTS: client_set_weights}
        )


def client_get_weights(role: Any, ins: GetWeightsIns) -> Payload:
    """The SLM's trainable weights and its number of private samples (the FedAvg weight)."""
    from lada.utils.model_state import trainable_state

    role.enter_round(ins.round)
    st = flatten(trainable_state(role.model))
    return WeightsRes(
        num_samples=len(role.train), names=st.names, shapes=st.shapes_json, flat=st.flat
    )


def client_set_weights(role: Any, ins: SetWeightsIns) -> Payload:
    """Load averaged (or distilled) trainable weights into the SLM."""
    role.enter_round(ins.round)
    state = FlatState(list(ins.names), json.loads(ins.shapes), ins.flat)
    return SetWeightsRes(num_params=load_flat(role.model, state))


__all__ = ["FedCoLLMConfig", "FedCoLLMHost", "fedavg_step", "server_distill"]
