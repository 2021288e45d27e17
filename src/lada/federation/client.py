"""The client role: one organisation with its SLM, its private data and a copy of P.

It answers the protocol's tasks and nothing else. Its state (the SLM's trained weights) lives
in its own ``state_dir``: saved at the end of each round it takes part in, restored when it is
asked to work on a round whose predecessor it does not hold in memory (resume, restart).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lada.config.schema import DistillConfig, EvalConfig, LimitsConfig, LocalTrainConfig
from lada.data.sample import Sample
from lada.federation.protocol import (
    DistillIns,
    DistillRes,
    EmbedIns,
    EmbedRes,
    EvaluateIns,
    EvaluateRes,
    GenerateIns,
    GetWeightsIns,
    LocalTrainIns,
    LocalTrainRes,
    LogitDistillIns,
    LogitDistillRes,
    LogitsIns,
    LogitsRes,
    PathsRes,
    Payload,
    ScoreIns,
    ScoreRes,
    SetWeightsIns,
    SetWeightsRes,
    Task,
    WeightsRes,
)
from lada.utils.model_state import load_trainable, save_trainable
from lada.utils.seeding import derive_seed, seed_everything

ModelLoader = Callable[[], tuple[Any, Any]]


@dataclass
class ClientSettings:
    local: LocalTrainConfig
    distill: DistillConfig
    eval: EvalConfig
    seed: int = 0
    host: str = "sft"  # the host framework (lada.hosts): chooses the distillation loss
    model_name: str = "slm"  # the SLM's name (error messages, e.g. a vocabulary mismatch)
    limits: LimitsConfig = field(default_factory=LimitsConfig)  # instruction checks


def _mean_seen(per_sample: np.ndarray) -> float:
    seen = per_sample[~np.isnan(per_sample)]
    return float(seen.mean()) if seen.size else float("nan")


class ClientRole:
    """Holds SLM k. ``handle(task, ins)`` is the only entry point an engine uses."""

    def __init__(
        self,
        cid: int,
        load_model: ModelLoader,
        train: list[Sample],
        test: list[Sample],
        public: list[Sample],
        settings: ClientSettings,
        state_dir: str | Path,
    ) -> None:
        self.cid = cid
        self._load_model = load_model
        self.train, self.test = train, test
        self.public = {s.id: s for s in public}
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.model: Any = None
        self.tokenizer: Any = None
        self.ended_round: int | None = None  # the model holds this round's end state
        self.working_round: int | None = None  # the round the model is working on
        self._vocab: str | None = None

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

    def handle(self, task: Task, ins: Payload) -> Payload:
        handlers = {
            Task.LOCAL_TRAIN: self.local_train,
            Task.EMBED: self.embed,
            Task.GENERATE: self.generate,
            Task.DISTILL: self.distill,
            Task.EVALUATE: self.evaluate,
            Task.SCORE: self.score,
            Task.GET_WEIGHTS: self.get_weights,
            Task.SET_WEIGHTS: self.set_weights,
            Task.LOGITS: self.logits,
            Task.DISTILL_LOGITS: self.distill_logits,
        }
        from lada.federation.guard import answer

        # refuses an invalid instruction; stamps the reply with (task, round, client)
        return answer(self, task, ins, handlers[task])  # type: ignore[arg-type]

    def _seed(self, round_idx: int, task: str) -> int:
        seed = derive_seed(self.settings.seed, "client", self.cid, round_idx, task)
        seed_everything(seed)
        return seed

    def local_train(self, ins: LocalTrainIns) -> LocalTrainRes:
        from lada.train.sft import sft

        self.enter_round(ins.round)
        seed = self._seed(ins.round, "local_train")
        stats = sft(
            self.model,
            self.tokenizer,
            [s.prompt() for s in self.train],
            [s.target() for s in self.train],
            replace(self.settings.local.optim, seed=seed),
        )
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

    def _own_paths(self, ids: list[str], round_idx: int) -> list[str]:
        from lada.eval.generate import generate_paths

        self._seed(round_idx, "generate")
        d = self.settings.distill
        return generate_paths(
            self.model,
            self.tokenizer,
            [self.public[i].prompt() for i in ids],
            max_new_tokens=d.max_new_tokens,
            batch_size=d.gen_batch_size,
            desc="paths SLM",
        )

    def generate(self, ins: GenerateIns) -> PathsRes:
        self.enter_round(ins.round)
        paths = self._own_paths(list(ins.ids), ins.round) if ins.ids else []
        return PathsRes(ids=list(ins.ids), paths=paths)

    def distill(self, ins: DistillIns) -> DistillRes:
        from lada.train.distill import learn_from_paths

        self.enter_round(ins.round)
        ids = list(ins.ids)
        if not ids:
            empty = np.zeros(0, dtype=np.float32)
            return DistillRes(
                ids=[], loss_before=empty, loss_after=empty, margin=empty, num_pairs=0
            )
        d = self.settings.distill
        if d.lambda_cd == 0 and d.preference == "role":
            own = list(ins.teacher_paths)  # no L_CD: the learner's own paths are not needed
        else:
            own = self._own_paths(ids, ins.round)
        rehearse = self.rehearsal(ins.round)
        gold = [s.target() for s in rehearse]
        seed = self._seed(ins.round, "distill")
        out = learn_from_paths(
            self.model,
            self.tokenizer,
            [self.public[i] for i in ids] + rehearse,
            list(ins.teacher_paths) + gold,
            own + gold,  # identical pairs: rehearsal adds SFT only
            self.settings.distill,
            replace(self.settings.distill.slm_optim, seed=seed),
            host=self.settings.host,
        )
        n = len(ids)  # only the public picks are reported (and rewarded)
        return DistillRes(
            ids=ids,
            loss_before=out.loss_before[:n].astype(np.float32),
            loss_after=out.loss_after[:n].astype(np.float32),
            margin=out.margin[:n].astype(np.float32),
            num_pairs=out.num_pairs,
            trained=_trained_mask(out, n),
        )

    def rehearsal(self, round_idx: int) -> list[Sample]:
        """``distill.slm_replay`` (ours) private training samples for this round's distillation
        step, a fresh deterministic draw per round; they never leave the client."""
        n = min(self.settings.distill.slm_replay, len(self.train))
        if n <= 0:
            return []
        rng = random.Random(derive_seed(self.settings.seed, "client", self.cid, round_idx, "reh"))
        return rng.sample(self.train, n)

    # ---- FedMKT: top-k logits on public gold texts ---------------------------------------

    def vocab(self) -> str:
        """The SLM's vocabulary fingerprint (logits are comparable only under equal ones)."""
        from lada.train.logit_distill import vocab_fingerprint

        if self._vocab is None:
            self._vocab = vocab_fingerprint(self.tokenizer)
        return self._vocab

    def logits(self, ins: LogitsIns) -> LogitsRes:
        """The SLM's top-k logits and CE on the gold texts of public ``ids`` (FedMKT's upload;
        sent with its vocabulary fingerprint even for no ids, so the server can check it)."""
        from lada.train.logit_distill import compute_topk

        self.enter_round(ins.round)
        ids = list(ins.ids)
        samples = [self.public[i] for i in ids]
        top = compute_topk(
            self.model,
            self.tokenizer,
            ids,
            [s.prompt() for s in samples],
            [s.target() for s in samples],
            ins.top_k,
            self.settings.distill.slm_optim.max_length,
            self.settings.model_name,
            vocab=self.vocab(),
        )
        return LogitsRes(
            ids=ids,
            model=top.model,
            vocab=top.vocab,
            lengths=top.lengths,
            indices=top.indices,
            values=top.values,
            ce=top.ce,
        )

    def distill_logits(self, ins: LogitDistillIns) -> LogitDistillRes:
        """FedMKT's learner step (:mod:`lada.hosts.fedmkt`): LM + distill from the LLM's top-k
        where the LLM's CE is lower than the SLM's own (min-CE), + λ·L_CD with LaDa's paths."""
        from lada.hosts.fedmkt import learn_from_logits
        from lada.train.logit_distill import TopKLogits

        self.enter_round(ins.round)
        ids = list(ins.ids)
        empty = np.zeros(0, dtype=np.float32)
        if not ids:
            return LogitDistillRes([], empty, empty, empty, num_pairs=0, num_distilled=0)
        teacher = TopKLogits(
            ids, ins.lengths, ins.indices, ins.values, ins.ce, ins.vocab, ins.model
        )
        paths = list(ins.teacher_paths) or None
        d = self.settings.distill
        own = None
        if paths is not None and not (d.lambda_cd == 0 and d.preference == "role"):
            own = self._own_paths(ids, ins.round)
        seed = self._seed(ins.round, "distill")
        out, n_kd = learn_from_logits(
            self.model,
            self.tokenizer,
            [self.public[i] for i in ids],
            {0: teacher},
            paths,
            own,
            d,
            replace(d.slm_optim, seed=seed),
            learner=self.settings.model_name,
            vocab=self.vocab(),
        )
        return LogitDistillRes(
            ids=ids,
            loss_before=out.loss_before.astype(np.float32),
            loss_after=out.loss_after.astype(np.float32),
            margin=out.margin.astype(np.float32),
            num_pairs=out.num_pairs,
            num_distilled=n_kd,
            trained=_trained_mask(out, len(ids)),
        )

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

    def get_weights(self, ins: GetWeightsIns) -> WeightsRes:
        from lada.hosts.fedavg import flatten
        from lada.utils.model_state import trainable_state

        self.enter_round(ins.round)
        st = flatten(trainable_state(self.model))
        return WeightsRes(
            num_samples=len(self.train), names=st.names, shapes=st.shapes_json, flat=st.flat
        )

    def set_weights(self, ins: SetWeightsIns) -> SetWeightsRes:
        from lada.hosts.fedavg import FlatState, load_flat

        self.enter_round(ins.round)
        state = FlatState(list(ins.names), json.loads(ins.shapes), ins.flat)
        return SetWeightsRes(num_params=load_flat(self.model, state))

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
        )
        # the end of the round for this client: persist its state
        self._save(ins.round)
        return EvaluateRes(
            num_samples=len(test),
            accuracy=float(result.accuracy),
            groups=json.dumps(group_counts(result.records)),
            correct=correctness_bits(result.records),
        )


def _trained_mask(out: Any, n: int) -> np.ndarray:
    """1 where one of the first n samples entered the loss (lada.train.distill.DistillOutcome)."""
    if out.trained is None:
        return np.ones(n, dtype=np.uint8)
    return np.asarray(out.trained[:n], dtype=np.uint8)
