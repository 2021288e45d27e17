"""The server role: the LLM, the public set P and the learnability-aware filters.

One filter per (SLM k, LLM) pair and direction (spec §3): ``F[k]["S"]`` picks public samples
for SLM k to learn from the LLM's paths, ``F[k]["L"]`` picks samples for the LLM to learn from
SLM k's paths. Filters run here because allocation is the server's job; the learner's losses
they need come back from the clients in ``DistillRes`` (metrics, never private text).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lada.config.schema import DistillConfig, EvalConfig, LimitsConfig
from lada.data.sample import Sample
from lada.filter.bandit import LearnabilityFilter
from lada.filter.config import FilterConfig
from lada.filter.features import pair_context
from lada.filter.guard import check_contexts
from lada.utils.files import atomic_write_text
from lada.utils.model_state import load_trainable, save_trainable
from lada.utils.seeding import derive_seed, seed_everything
from lada.utils.steplog import log_steps

DIRECTIONS = ("S", "L")  # S: SLM learns from the LLM; L: the LLM learns from the SLM


@dataclass
class ServerSettings:
    distill: DistillConfig
    eval: EvalConfig
    filter: FilterConfig
    seed: int = 0
    model_name: str = "llm"  # the LLM's name (error messages, e.g. a vocabulary mismatch)
    slm_name: str = "slm"  # the SLMs' model name (a host holding the SLM on the server)
    limits: LimitsConfig = field(default_factory=LimitsConfig)  # reply checks (validation)
    world: Any = None  # the synthetic world's config: allocation=oracle's true answers


@dataclass
class LearnerLosses:
    """Losses of one learner on its selected samples, as the reward needs them."""

    ids: list[str]
    loss_before: np.ndarray
    loss_after: np.ndarray
    margin: np.ndarray
    trained: np.ndarray | None = None  # per id: entered the learner's loss (None: all did)
    # per id: the teacher's path the learner was taught (public text the server holds anyway:
    # the LLM's own paths, or the SLM's paths it received); None where not recorded
    paths: list[str] | None = None
    num_pairs: int | None = None  # L_CD pairs among these picks (None: not counted)

    @classmethod
    def rows(cls, outcome: Any, ids: list[str], rows: list[int]) -> LearnerLosses:
        """The learner's losses on ``ids``, rows ``rows`` of a step's outcome (a
        :class:`lada.train.distill.DistillOutcome`)."""
        paired = getattr(outcome, "paired", None)
        return cls(
            ids=list(ids),
            loss_before=outcome.loss_before[rows],
            loss_after=outcome.loss_after[rows],
            margin=outcome.margin[rows],
            trained=None if outcome.trained is None else outcome.trained[rows],
            num_pairs=None if paired is None else int(np.asarray(paired)[rows].sum()),
        )

    def as_lists(self) -> dict[str, list]:
        """JSON-able lists (RoundReport.learning)."""
        return {
            "ids": list(self.ids),
            "loss_before": [float(x) for x in self.loss_before],
            "loss_after": [float(x) for x in self.loss_after],
            "margin": [float(x) for x in self.margin],
            # 1: the pick entered the learner's loss (only those are rewarded)
            "trained": [1] * len(self.ids)
            if self.trained is None
            else [int(x) for x in np.asarray(self.trained).astype(bool)],
            **({} if self.paths is None else {"paths": list(self.paths)}),
        }

    def mean(self, which: str) -> float:
        """Mean of ``loss_before`` or ``loss_after`` (NaN without ids): the round report's."""
        return float(np.mean(getattr(self, which))) if len(self.ids) else float("nan")


@dataclass
class Allocation:
    ids: dict[str, list[str]] = field(default_factory=dict)  # direction -> public ids
    mode: dict[str, str] = field(default_factory=dict)  # direction -> cold_start | bandit
    mean_score: dict[str, float] = field(default_factory=dict)
    # direction -> public samples outside the candidates (their teacher will not teach them)
    masked: dict[str, int] = field(default_factory=dict)


class ServerRole:
    def __init__(
        self,
        load_model: Callable[[], tuple[Any, Any]],
        public: list[Sample],
        eval_sets: dict[int, list[Sample]],
        settings: ServerSettings,
        load_slm: Callable[[], tuple[Any, Any]] | None = None,
    ) -> None:
        """``load_slm`` (a host that holds the clients' SLM architecture on the server, e.g.
        FedCoLLM's averaged SLM) loads it; :meth:`slm` loads it once."""
        self.model, self.tokenizer = load_model()
        self._load_slm = load_slm
        self._slm: tuple[Any, Any] | None = None
        self.public = public
        self.public_ids = [s.id for s in public]
        self.by_id = {s.id: s for s in public}
        self.eval_sets = eval_sets
        self.settings = settings
        self.filters: dict[int, dict[str, LearnabilityFilter]] = {}
        self._contexts: dict[int, np.ndarray] = {}
        # distill.llm_memory (ours): verified SLM paths of earlier rounds, public id -> path,
        # oldest first; public text the server has received anyway, saved with its state
        self.memory: dict[str, str] = {}
        self._llm_feats: np.ndarray | None = None

    # ---- filters ------------------------------------------------------------------------

    def _filter(self, k: int, direction: str, dim: int) -> LearnabilityFilter:
        per = self.filters.setdefault(k, {})
        if direction not in per:
            cfg = self.settings.filter
            seed = derive_seed(self.settings.seed, "filter", k, direction) % (2**31)
            per[direction] = LearnabilityFilter(dim, _with_seed(cfg, seed))
        return per[direction]

    def expected_feature_dim(self, k: int) -> int | None:
        """The width of client k's features its filters were built for (None: no filter yet)."""
        per = self.filters.get(k)
        if not per or self._llm_feats is None:
            return None
        return next(iter(per.values())).dim - int(self._llm_feats.shape[1])

    def public_features(self, round_idx: int) -> np.ndarray:
        from lada.filter.features import mean_pooled_hidden

        self._llm_feats = mean_pooled_hidden(
            self.model, self.tokenizer, [s.prompt() for s in self.public]
        )
        return self._llm_feats

    def allocate(
        self,
        round_idx: int,
        k: int,
        slm_features: np.ndarray,
        candidates: dict[str, np.ndarray] | None = None,
        directions: tuple[str, ...] = DIRECTIONS,
    ) -> Allocation:
        """The picks of pair k in ``directions`` (spec §3 and §5 step 2), each filter choosing
        among ``candidates[d]`` (bool over P: what the teacher will teach; None: all of P)."""
        assert self._llm_feats is not None, "call public_features first"
        x = check_contexts(pair_context(slm_features, self._llm_feats))
        self._contexts[k] = x
        alloc = Allocation()
        for d in directions:
            f = self._filter(k, d, x.shape[1])
            idx = f.select(x, round_idx, None if candidates is None else candidates.get(d))
            alloc.ids[d] = [self.public_ids[i] for i in idx]
            alloc.mode[d] = str(f.last_mode)
            alloc.masked[d] = int(f.last_masked)
            scores = f.last_scores
            alloc.mean_score[d] = (
                float(np.nanmean(scores[idx]))
                if scores is not None and not np.all(np.isnan(scores))
                else float("nan")
            )
        return alloc

    def reward(self, k: int, direction: str, losses: LearnerLosses) -> dict[str, Any]:
        """Spec §3 rewards from the learner's losses on the picks it trained on; the filter
        learns them with its decision-time records (lada.filter.rewarding)."""
        from lada.filter.rewarding import reward_picks

        pos = {pid: i for i, pid in enumerate(self.public_ids)}
        return reward_picks(self.filters[k][direction], losses, pos)

    # ---- the LLM's own work -------------------------------------------------------------

    def generate(self, round_idx: int, ids: list[str]) -> dict[str, str]:
        """The LLM's paths for public ``ids``, empty where it abstains
        (``distill.llm_teaches: labelled``: P has no label for the question)."""
        from lada.accel import generator

        if not ids:
            return {}
        seed_everything(derive_seed(self.settings.seed, "server", round_idx, "generate"))
        d = self.settings.distill
        told = [i for i in ids if self.teaches(i)]
        paths = generator(self.model, self.tokenizer).paths(
            [self.by_id[i].prompt() for i in told],
            max_new_tokens=d.max_new_tokens,
            batch_size=d.gen_batch_size,
            desc="paths LLM",
        )
        out = dict.fromkeys(ids, "")
        out.update(zip(told, paths, strict=True))
        return out

    def own_paths(self, round_idx: int, ids: list[str]) -> dict[str, str]:
        """The LLM's own paths for public ``ids`` as a learner (L_CD's rejected side when it
        learns SLM k's path), written also where it abstains as a teacher."""
        from lada.accel import generator

        if not ids:
            return {}
        seed_everything(derive_seed(self.settings.seed, "server", round_idx, "own_paths"))
        d = self.settings.distill
        paths = generator(self.model, self.tokenizer).paths(
            [self.by_id[i].prompt() for i in ids],
            max_new_tokens=d.max_new_tokens,
            batch_size=d.gen_batch_size,
            desc="own paths LLM",
        )
        return dict(zip(ids, paths, strict=True))

    def teaches(self, pid: str) -> bool:
        """Whether the LLM writes a path for public sample ``pid`` (``distill.llm_teaches``)."""
        return self.settings.distill.llm_teaches == "all" or bool(self.by_id[pid].answer)

    def learn(
        self,
        round_idx: int,
        teacher: dict[int, tuple[list[str], list[str]]],
        own_paths: dict[str, str],
    ) -> dict[int, LearnerLosses]:
        """The LLM learns from the SLMs' paths over the union of LLM-side picks (spec §5.4),
        plus (ours, off when 0) its own verified paths of the round (``distill.llm_replay``)
        and verified SLM paths of earlier rounds (``distill.llm_memory``): SFT only, no L_CD,
        no reward."""
        from lada.train.distill import learn_from_paths, verified_mask

        # (client, public id, teacher path, the LLM's own path); client -1: rehearsal
        items = [
            (k, pid, path, own_paths[pid])
            for k, (ids, paths) in sorted(teacher.items())
            for pid, path in zip(ids, paths, strict=True)
        ]
        if not items:
            return {}
        taught = {pid for _, pid, _, _ in items}
        if self.settings.distill.llm_replay_paths == "gold":
            items += [
                (-1, pid, self.by_id[pid].target(), self.by_id[pid].target())
                for pid in self.gold_replay_ids(round_idx, taught)
            ]
        else:
            items += [
                (-1, pid, own_paths[pid], own_paths[pid])
                for pid in self.replay_ids(own_paths, taught)
            ]
        recalled = [pid for pid in reversed(self.memory) if pid not in taught]
        recalled = recalled[: self.settings.distill.llm_memory]
        items += [(-1, pid, self.memory[pid], self.memory[pid]) for pid in recalled]
        seed = derive_seed(self.settings.seed, "server", round_idx, "distill")
        seed_everything(seed)
        samples = [self.by_id[pid] for _, pid, _, _ in items]
        out = learn_from_paths(
            self.model,
            self.tokenizer,
            samples,
            [path for _, _, path, _ in items],
            [own for _, _, _, own in items],
            self.settings.distill,
            replace(self.settings.distill.llm_optim, seed=seed),
            unlabelled_cd=self.settings.distill.llm_unlabelled_cd,
        )
        log_steps("loss/llm_distill", out.stats)
        if self.settings.distill.llm_memory > 0:
            new = [j for j, it in enumerate(items) if it[0] >= 0]
            ok = verified_mask([samples[j] for j in new], [items[j][2] for j in new])
            # verified where P has a label; on an unlabelled question the role decides (the
            # knowledge channel: SLM k's path is what the LLM learns there)
            for j, good in zip(new, ok, strict=True):
                if good:
                    self.memory.pop(items[j][1], None)  # most recent last
                    self.memory[items[j][1]] = items[j][2]
        result: dict[int, LearnerLosses] = {}
        for k in teacher:
            rows = [j for j, it in enumerate(items) if it[0] == k]
            result[k] = LearnerLosses.rows(out, [items[j][1] for j in rows], rows)
        return result

    def replay_ids(self, own_paths: dict[str, str], exclude: set[str]) -> list[str]:
        """Rehearsal (``distill.llm_replay``, ours): public ids outside ``exclude`` whose path in
        ``own_paths`` (the LLM's own, this round) reaches P's gold answer, at most
        ``llm_replay`` of them in P's order. Their pairs are identical (teacher = own path), so
        they add SFT on the LLM's own verified reasoning and no L_CD term or reward."""
        from lada.train.distill import verified_mask

        n = self.settings.distill.llm_replay
        ids = [pid for pid in self.public_ids if pid in own_paths and pid not in exclude]
        if n <= 0 or not ids:
            return []
        ok = verified_mask([self.by_id[i] for i in ids], [own_paths[i] for i in ids])
        labelled = [bool(self.by_id[i].answer) for i in ids]
        return [i for i, good, lab in zip(ids, ok, labelled, strict=True) if good and lab][:n]

    def gold_replay_ids(self, round_idx: int, exclude: set[str]) -> list[str]:
        """Rehearsal from P's labels (``distill.llm_replay_paths: gold``, ours): up to
        ``llm_replay`` labelled public ids outside ``exclude``, drawn evenly across numbers of
        reasoning steps (a fresh deterministic shuffle per round, then one id per step count
        in turn), so that the rehearsal keeps every chain length, not the short ones a
        verified-own-path draw favours. The LLM learns their gold paths (``Sample.target``)."""
        n = self.settings.distill.llm_replay
        ids = [i for i in self.public_ids if self.by_id[i].answer and i not in exclude]
        if n <= 0 or not ids:
            return []
        rng = np.random.default_rng(derive_seed(self.settings.seed, "server", round_idx, "gold"))
        groups: dict[int, list[str]] = {}
        for i in ids:
            groups.setdefault(self.by_id[i].num_steps, []).append(i)
        queues = [list(rng.permutation(groups[k])) for k in sorted(groups)]
        out: list[str] = []
        while len(out) < n and any(queues):
            for q in queues:
                if q and len(out) < n:
                    out.append(str(q.pop()))
        return out

    # ---- logit hosts (lada.hosts): vocabulary and a second model ------------------------

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    def vocab(self) -> str:
        """The LLM's vocabulary fingerprint (lada.train.logit_distill.vocab_fingerprint)."""
        from lada.train.logit_distill import cached_vocab_fingerprint

        return cached_vocab_fingerprint(self.tokenizer)

    def slm(self) -> tuple[Any, Any]:
        """The server's copy of the clients' SLM architecture (loaded once; FedCoLLM loads the
        averaged weights into it)."""
        if self._slm is None:
            if self._load_slm is None:
                raise RuntimeError(
                    "this server was built without an SLM loader (a host with server_holds_slm)"
                )
            self._slm = self._load_slm()
        return self._slm

    def evaluate(self, round_idx: int) -> dict[int, dict[str, Any]]:
        """The LLM on every client's test set (the benchmark's evaluation data, held by the
        experimenter; it is not received through the protocol)."""
        from lada.eval.accuracy import correctness_bits, evaluate, group_counts, ids_fingerprint

        e = self.settings.eval
        out: dict[int, dict[str, Any]] = {}
        for k, samples in sorted(self.eval_sets.items()):
            test = samples if e.limit is None else samples[: e.limit]
            t0 = time.perf_counter()
            res = evaluate(
                self.model,
                self.tokenizer,
                test,
                batch_size=e.batch_size,
                max_new_tokens=e.max_new_tokens,
                desc=f"evaluate LLM on client {k}",
            )
            out[k] = {
                "accuracy": float(res.accuracy),
                "n": len(test),
                "groups": group_counts(res.records),
                "correct": correctness_bits(res.records),
                "ids_sha1": ids_fingerprint(s.id for s in test),
                "seconds": time.perf_counter() - t0,
            }
        return out

    # ---- state --------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_trainable(self.model, directory / "llm.safetensors")
        torch.save(
            {
                str(k): {d: f.state_dict() for d, f in per.items()}
                for k, per in self.filters.items()
            },
            directory / "filters.pt",
        )
        atomic_write_text(directory / "memory.json", json.dumps(list(self.memory.items())))

    def load(self, directory: Path) -> None:
        load_trainable(self.model, directory / "llm.safetensors")
        mem = directory / "memory.json"
        self.memory = dict(json.loads(mem.read_text())) if mem.exists() else {}
        states = load_filter_states(directory / "filters.pt")
        self.filters = {}
        for k, per in states.items():
            for d, st in per.items():
                f = self._filter(int(k), d, int(st["dim"]))
                f.load_state_dict(st)


class UntrustedFileError(ValueError):
    """A run file that is not plain data (e.g. a pickle that would run code when loaded)."""


def load_filter_states(path: Path) -> dict[str, Any]:
    """The filters' states saved by :meth:`ServerRole.save`, read as data only
    (``torch.load(weights_only=True)``: tensors and Python primitives; a pickle that would build
    any other object, and so could run code, is refused with :class:`UntrustedFileError`)."""
    import pickle

    try:
        states = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        first = lines[0].strip() if lines else type(e).__name__
        raise UntrustedFileError(
            f"{path}: refused: it holds objects other than tensors and plain values, which "
            f"could run code when loaded ({first}); only load filter states written by LaDa"
        ) from None
    if not isinstance(states, dict) or not all(isinstance(v, dict) for v in states.values()):
        raise UntrustedFileError(
            f"{path}: not a LaDa filter state ({{client: {{direction: ...}}}})"
        )
    bad = _non_finite(states)
    if bad:
        raise UntrustedFileError(
            f"{path}: non-finite values in {bad} (filters hold finite numbers)"
        )
    return states


def _non_finite(v: Any, where: str = "") -> str | None:
    """The first place in a nested state that holds NaN or infinity, or None."""
    if isinstance(v, dict):
        return next((w for k, x in v.items() if (w := _non_finite(x, f"{where}/{k}"))), None)
    if isinstance(v, list | tuple):
        return next((w for i, x in enumerate(v) if (w := _non_finite(x, f"{where}/{i}"))), None)
    if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
        return where
    if isinstance(v, float) and not np.isfinite(v):
        return where
    return None


def _with_seed(cfg: FilterConfig, seed: int) -> FilterConfig:
    return replace(cfg, seed=seed)
