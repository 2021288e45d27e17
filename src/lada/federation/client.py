"""The client role: one organisation with its SLM, its private data and a copy of P.

It answers the protocol's tasks and nothing else. Its state (the SLM's trained weights) lives
in its own ``state_dir``: saved at the end of each round it takes part in, restored when it is
asked to work on a round whose predecessor it does not hold in memory (resume, restart).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lada.config.schema import DistillConfig, EvalConfig, LimitsConfig, LocalTrainConfig
from lada.data.sample import Sample
from lada.federation.host import Host
from lada.federation.protocol import (
    DistillIns,
    DistillRes,
    EmbedIns,
    EmbedRes,
    EvaluateIns,
    EvaluateRes,
    GenerateIns,
    LocalTrainIns,
    LocalTrainRes,
    PathsRes,
    Payload,
    ScoreIns,
    ScoreRes,
    Task,
)
from lada.utils.model_state import load_trainable, save_trainable
from lada.utils.seeding import derive_seed, seed_everything
from lada.utils.steplog import log_steps

ModelLoader = Callable[[], tuple[Any, Any]]


@dataclass
class ClientSettings:
    local: LocalTrainConfig
    distill: DistillConfig
    eval: EvalConfig
    seed: int = 0
    model_name: str = "slm"  # the SLM's name (error messages, e.g. a vocabulary mismatch)
    limits: LimitsConfig = field(default_factory=LimitsConfig)  # instruction checks
    # the host alone's matched rehearsal (distill.slm_replay_alone, ours): the local step ends
    # with the private samples LaDa's distillation step would rehearse (ClientRole.rehearse)
    rehearse_after_local: bool = False


def _mean_seen(per_sample: np.ndarray) -> float:
    seen = per_sample[~np.isnan(per_sample)]
    return float(seen.mean()) if seen.size else float("nan")


class ClientRole:
    """Holds SLM k. ``handle(task, ins)`` is the only entry point an engine uses.

    ``host`` (a :class:`lada.federation.host.Host`; default the plain host) adds its task
    handlers and gives L_host of the distillation step."""

    def __init__(
        self,
        cid: int,
        load_model: ModelLoader,
        train: list[Sample],
        test: list[Sample],
        public: list[Sample],
        settings: ClientSettings,
        state_dir: str | Path,
        host: Host | None = None,
    ) -> None:
        self.cid = cid
        self.host = host or Host()
        self._load_model = load_model
        self.train, self.test = train, test
        self.public = {s.id: s for s in public}
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.model: Any = None
        self.tokenizer: Any = None
        self.ended_round: int | None = None  # the model holds this round's end state
        self.working_round: int | None = None  # the round the model is working on
        self._handlers: Mapping[str, Callable[[Any], Payload]] = {
            Task.LOCAL_TRAIN: self.local_train,
            Task.EMBED: self.embed,
            Task.GENERATE: self.generate,
            Task.DISTILL: self.distill,
            Task.EVALUATE: self.evaluate,
            Task.SCORE: self.score,
            **self.host.client_handlers(self),
        }

    # ---- state --------------------------------------------------------------------------

    def _checkpoint(self, round_idx: int) -> Path:
        return self.state_dir / f"round_{round_idx:03d}.safetensors"

    def enter_round(self, round_idx: int) -> None:
        """Make the model hold round ``round_idx``'s working state.

        Continues in memory when this round is under way or the previous one ended here;
        otherwise restores the latest round saved before ``round_idx`` (or the base model).
        """
        if self.model is not None and self.working_round == round_idx:
            return
        if self.model is not None and self.ended_round == round_idx - 1:
            self.working_round = round_idx
            return
        saved = [r for r in self.saved_rounds() if r < round_idx]
        if self.model is None or not saved:
            self.model, self.tokenizer = self._load_model()
        if saved:
            load_trainable(self.model, self._checkpoint(saved[-1]))
        self.ended_round = saved[-1] if saved else 0
        self.working_round = round_idx

    def saved_rounds(self) -> list[int]:
        if not self.state_dir.exists():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.state_dir.glob("round_*.safetensors"))

    def _save(self, round_idx: int) -> None:
        save_trainable(self.model, self._checkpoint(round_idx))
        self.ended_round = round_idx

    # ---- tasks --------------------------------------------------------------------------

    def handle(self, task: Task | str, ins: Payload) -> Payload:
        handler = self._handlers.get(str(task))
        if handler is None:
            raise ValueError(
                f"client {self.cid}: task {str(task)!r} is not handled with host "
                f"{self.host.name!r} (tasks: {', '.join(sorted(self._handlers))})"
            )
        from lada.federation.guard import answer

        # refuses an invalid instruction; stamps the reply with (task, round, client)
        return answer(self, task, ins, handler)  # type: ignore[arg-type]

    def task_seed(self, round_idx: int, task: str) -> int:
        """Seed every RNG for ``task`` of round ``round_idx`` (deterministic per client)."""
        seed = derive_seed(self.settings.seed, "client", self.cid, round_idx, task)
        seed_everything(seed)
        return seed

    def local_train(self, ins: LocalTrainIns) -> LocalTrainRes:
        from lada.train.sft import sft

        self.enter_round(ins.round)
        seed = self.task_seed(ins.round, "local_train")
        stats = sft(
            self.model,
            self.tokenizer,
            [s.prompt() for s in self.train],
            [s.target() for s in self.train],
            replace(self.settings.local.optim, seed=seed),
            progress=f"client {self.cid} local training (round {ins.round})",
        )
        log_steps(f"loss/slm_{self.cid}_local", stats)
        if self.settings.rehearse_after_local:
            self.rehearse(ins.round)
        return LocalTrainRes(
            num_samples=len(self.train),
            # over the samples the step saw (max_steps may stop before an epoch ends: NaN = unseen)
            mean_loss=_mean_seen(stats.per_sample_loss),
        )

    def embed(self, ins: EmbedIns) -> EmbedRes:
        from lada.filter.features import mean_pooled_hidden

        self.enter_round(ins.round)
        texts = [self.public[i].prompt() for i in ins.ids]
        feats = mean_pooled_hidden(self.model, self.tokenizer, texts)
        return EmbedRes(ids=list(ins.ids), features=np.asarray(feats, dtype=np.float32))

    def own_paths(self, ids: list[str], round_idx: int) -> list[str]:
        """The SLM's own reasoning paths for public ``ids`` (seeded per round)."""
        from lada.accel import generator

        self.task_seed(round_idx, "generate")
        d = self.settings.distill
        return generator(self.model, self.tokenizer).paths(
            [self.public[i].prompt() for i in ids],
            max_new_tokens=d.max_new_tokens,
            batch_size=d.gen_batch_size,
            desc="paths SLM",
        )

    def generate(self, ins: GenerateIns) -> PathsRes:
        """SLM k teaching the LLM: its paths for public ``ids``, empty where it abstains
        (``distill.slm_teaches``: outside its knowledge boundary, or, with ``consistent``,
        where its sampled paths do not agree with its greedy answer)."""
        self.enter_round(ins.round)
        ids = list(ins.ids)
        teach = self.inside_boundary(ids)
        told = [i for i, t in zip(ids, teach, strict=True) if t]
        paths = dict(zip(told, self.own_paths(told, ins.round), strict=True))
        if self.settings.distill.slm_teaches == "consistent":
            keep = self.consistent({i: p for i, p in paths.items() if p}, ins.round)
            paths = {i: p for i, p in paths.items() if i in keep}
        return PathsRes(ids=ids, paths=[paths.get(i, "") for i in ids])

    def inside_boundary(self, ids: list[str]) -> np.ndarray:
        """Which public ``ids`` lie inside this client's knowledge boundary
        (lada.train.boundary; all with ``distill.slm_teaches: all``), measured in its current
        model's features against its own training questions."""
        from lada.train.boundary import inside_boundary

        d = self.settings.distill
        if d.slm_teaches == "all" or not ids:
            return np.ones(len(ids), dtype=bool)
        return inside_boundary(
            self.model,
            self.tokenizer,
            [s.prompt() for s in self.train],
            [self.public[i].prompt() for i in ids],
            d.boundary_quantile,
            limit=d.boundary_reference,
            seed=derive_seed(self.settings.seed, "client", self.cid, "boundary"),
        )

    def consistent(self, paths: dict[str, str], round_idx: int) -> set[str]:
        """The public ids whose greedy path's answer at least ``distill.consistency_agree`` of
        ``distill.consistency_samples`` sampled paths reach (lada.eval.consistency)."""
        from lada.data.extract import extract_answer
        from lada.eval.consistency import agreement_counts

        d = self.settings.distill
        ids = list(paths)
        if not ids:
            return set()
        samples = [self.public[i] for i in ids]
        # a sample that runs twice as long as the longest greedy path is not reaching its answer
        longest = max(len(self.tokenizer(paths[i])["input_ids"]) for i in ids)
        counts = agreement_counts(
            self.model,
            self.tokenizer,
            [s.prompt() for s in samples],
            [extract_answer(paths[i], s.answer_type) for i, s in zip(ids, samples, strict=True)],
            answer_type=[s.answer_type for s in samples],
            samples=d.consistency_samples,
            temperature=d.consistency_temperature,
            max_new_tokens=min(d.max_new_tokens, 2 * longest + 8),
            # all samples in one batch: decode steps of tiny models cost their overhead, not rows
            batch_size=max(d.gen_batch_size, min(1024, len(ids) * d.consistency_samples)),
            seed=derive_seed(self.settings.seed, "client", self.cid, round_idx, "consistency"),
        )
        return {i for i, c in zip(ids, counts, strict=True) if c >= d.consistency_agree}

    def distill(self, ins: DistillIns) -> DistillRes:
        from lada.train.distill import learn_from_paths

        self.enter_round(ins.round)
        ids = list(ins.ids)
        if not ids:
            empty = np.zeros(0, dtype=np.float32)
            return DistillRes(
                ids=[], loss_before=empty, loss_after=empty, margin=empty, num_pairs=0
            )
        if self.needs_own_paths():
            own = self.own_paths(ids, ins.round)
        else:
            own = list(ins.teacher_paths)  # no L_CD: the learner's own paths are not needed
        rehearse = self.rehearsal(ins.round)
        gold = [s.target() for s in rehearse]
        seed = self.task_seed(ins.round, "distill")
        out = learn_from_paths(
            self.model,
            self.tokenizer,
            [self.public[i] for i in ids] + rehearse,
            list(ins.teacher_paths) + gold,
            own + gold,  # identical pairs: rehearsal adds SFT only
            self.settings.distill,
            replace(self.settings.distill.slm_optim, seed=seed),
            host_loss=self.host.host_loss,
        )
        log_steps(f"loss/slm_{self.cid}_distill", out.stats)
        n = len(ids)  # only the public picks are reported (and rewarded)
        return DistillRes(
            ids=ids,
            loss_before=out.loss_before[:n].astype(np.float32),
            loss_after=out.loss_after[:n].astype(np.float32),
            margin=out.margin[:n].astype(np.float32),
            num_pairs=out.num_pairs,
            trained=trained_mask(out, n),
        )

    def rehearse(self, round_idx: int) -> None:
        """The host alone's matched rehearsal (``distill.slm_replay_alone``, ours): the private
        samples :meth:`rehearsal` draws for this round, learnt exactly as LaDa's distillation
        step learns them (gold paths as identical pairs: SFT through L_host, no L_CD), with the
        distillation step's optimiser and seed, but without public picks."""
        from lada.train.distill import learn_from_paths

        rehearse = self.rehearsal(round_idx)
        if not rehearse:
            return
        gold = [s.target() for s in rehearse]
        seed = self.task_seed(round_idx, "distill")
        learn_from_paths(
            self.model,
            self.tokenizer,
            rehearse,
            gold,
            gold,
            self.settings.distill,
            replace(self.settings.distill.slm_optim, seed=seed),
            host_loss=self.host.host_loss,
        )

    def needs_own_paths(self) -> bool:
        """Whether a distillation step needs the SLM's own paths (L_CD's other side, or the
        correctness preference); with λ = 0 and the role preference it does not."""
        d = self.settings.distill
        return not (d.lambda_cd == 0 and d.preference == "role")

    def rehearsal(self, round_idx: int) -> list[Sample]:
        """``distill.slm_replay`` (ours) private training samples for this round's distillation
        step, a fresh deterministic draw per round; they never leave the client."""
        n = min(self.settings.distill.slm_replay, len(self.train))
        if n <= 0:
            return []
        rng = random.Random(derive_seed(self.settings.seed, "client", self.cid, round_idx, "reh"))
        return rng.sample(self.train, n)

    def vocab(self) -> str:
        """The SLM's vocabulary fingerprint (logits are comparable only under equal ones)."""
        from lada.train.logit_distill import cached_vocab_fingerprint

        return cached_vocab_fingerprint(self.tokenizer)

    def score(self, ins: ScoreIns) -> ScoreRes:
        """The SLM's NLL of given paths on public ids (allocation baselines)."""
        from lada.federation.allocation import score_nll

        self.enter_round(ins.round)
        cond, uncond = score_nll(
            self.model,
            self.tokenizer,
            [self.public[i].prompt() for i in ins.ids],
            list(ins.paths),
            self.settings.distill.slm_optim.max_length,
        )
        return ScoreRes(ids=list(ins.ids), nll_cond=cond, nll_uncond=uncond)

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        from lada.eval.accuracy import correctness_bits, evaluate, group_counts

        self.enter_round(ins.round)
        e = self.settings.eval
        test = self.test if e.limit is None else self.test[: e.limit]
        result = evaluate(
            self.model,
            self.tokenizer,
            test,
            batch_size=e.batch_size,
            max_new_tokens=e.max_new_tokens,
            desc="evaluate SLM",
            prompts=[self.host.slm_prompt(s.prompt()) for s in test],
        )
        # the end of the round for this client: persist its state
        self._save(ins.round)
        return EvaluateRes(
            num_samples=len(test),
            accuracy=float(result.accuracy),
            groups=json.dumps(group_counts(result.records)),
            # one bit per test question (the bench's paired intervals); "" when withheld
            correct=correctness_bits(result.records) if e.per_question else "",
        )


def trained_mask(out: Any, n: int) -> np.ndarray:
    """1 where one of the first n samples entered the loss (lada.train.distill.DistillOutcome)."""
    if out.trained is None:
        return np.ones(n, dtype=np.uint8)
    return np.asarray(out.trained[:n], dtype=np.uint8)
