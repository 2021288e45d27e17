"""The run configuration: plain dataclasses, every field with a default and a comment.

``RunConfig()`` *is* the embedded default (3 heterogeneous tiny SLMs, one tiny LLM, the paper's
data sizes, 5 rounds); ``configs/default.yaml`` is its dump. Values marked "ours" are our
reconstruction or a CPU-budget choice, not the paper's (see ``docs/method.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from lada import plugins
from lada.accel.settings import RETIRED_MODEL_KEYS, RuntimeConfig
from lada.config.sections import HOST_SECTIONS, RENAMED, default_host_settings  # noqa: F401
from lada.filter.config import FilterConfig
from lada.models.lora_config import LoraSettings
from lada.train.optim_config import OptimConfig
from lada.utils.rules import (
    Rule,
    device,
    dtype,
    ge,
    gt,
    half_open_range,
    one_of,
    step_range,
    within,
)


def _warmup_lora() -> LoraSettings:
    return LoraSettings(
        r=16,
        alpha=32,
        dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )


@dataclass
class WarmupConfig:
    """A real checkpoint's warm-up on the synthetic world's general facts, before the run (ours,
    docs/testbed.md "Real checkpoints and the world's general facts"): what the zoo models get
    from ``prepare``. The model is fine-tuned with LoRA on ``samples`` general-knowledge samples
    of every domain (``steps`` = [lo, hi] reasoning steps each, never a private fact), the
    adapters are merged into its weights and the result is cached under
    ``$LADA_CACHE/warm/<key>`` (:mod:`lada.provision.warmup`); the role then starts from it
    (with fresh adapters when it trains ``lora``). Synthetic data only."""

    samples: int = 256
    steps: list[int] = field(default_factory=lambda: [1, 4])
    lora: LoraSettings = field(default_factory=_warmup_lora)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=2e-3, epochs=3, batch_size=8, warmup_ratio=0.1, max_length=192
        )
    )
    seed: int = 0

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {"samples": ge(1), "steps": step_range}


@dataclass
class ModelConfig:
    """Which model a role holds: a zoo name (prepared locally), a local path or a hub id."""

    RETIRED_KEYS: ClassVar[dict[str, str]] = RETIRED_MODEL_KEYS  # old key -> its replacement

    model: str = "slm-s"
    gguf_file: str | None = None  # load weights from this GGUF file inside ``model`` (a folder)
    lora: LoraSettings | None = None  # train LoRA adapters instead of all weights
    # auto | fp32 | bf16 | fp16 (lada.accel.precision): auto = bf16 on a bf16 GPU, fp32 weights
    # + bf16 autocast on a CPU with native bf16 (AVX512-BF16 / AMX) for models >= 20 M params,
    # else fp32 (ours; the zoo models are smaller, so they run fp32); bf16 on CPU = fp32
    # weights + bf16 autocast. What each role ran in is in summary.json's runtime record
    dtype: str = "auto"
    device: str = "auto"  # "auto" = cuda when available, else cpu
    chat_template: Literal["auto", "off"] = "auto"  # auto: use the tokenizer's when it has one
    # a real checkpoint warmed up on the synthetic world's general facts first (None = as fetched)
    warmup: WarmupConfig | None = None

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {"dtype": dtype, "device": device}


@dataclass
class ClientConfig(ModelConfig):
    """One client: its SLM, and (for file data) where its private train/test data lie."""

    train_file: str | None = None  # private training data (files data only)
    train_range: list[int] | None = None  # [start, stop): this client's slice of train_file
    test_file: str | None = None  # private test data (files data only)
    test_range: list[int] | None = None  # [start, stop): this client's slice of test_file
    timeout_s: float | None = None  # a task slower than this is dropped and reported

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "timeout_s": gt(0, none_ok=True),
            "train_range": half_open_range,
            "test_range": half_open_range,
        }


@dataclass
class DataConfig:
    """Where the data come from."""

    kind: Literal["synthetic", "files"] = "synthetic"
    split: dict[str, Any] = field(default_factory=dict)  # SplitConfig overrides (synthetic)
    dir: str | None = None  # reuse a split made by `lada data make` instead of generating one
    public_file: str | None = None  # files data: the public set P
    public_range: list[int] | None = None  # [start, stop): the slice of public_file used as P
    # a client's train slice, its test slice and P must share no sample (by id); true accepts it
    allow_overlap: bool = False
    format: Literal["lada", "gsm8k", "mc"] = "lada"  # files data: loader
    fields: dict[str, Any] = field(default_factory=dict)  # files data: loader field options
    public_limit: int | None = None  # keep only the first N public samples
    train_limit: int | None = None  # keep only the first N private training samples per client
    test_limit: int | None = None  # keep only the first N private test samples per client

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "public_range": half_open_range,
            "public_limit": ge(1, none_ok=True),
            "train_limit": ge(1, none_ok=True),
            "test_limit": ge(1, none_ok=True),
        }


@dataclass
class LocalTrainConfig:
    """The host's local step: SFT of each SLM on its private data, every round."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3, epochs=3))


@dataclass
class DistillConfig:
    """Contrastive reasoning distillation (spec §4) on the filtered public samples."""

    lambda_cd: float = 1.0  # λ in L = L_host + λ·L_CD [spec default]
    beta: float = 0.1  # β of the DPO-like loss [spec default]
    preference: Literal["role", "correctness"] = "role"  # who is preferred [spec default: role]
    skip_identical: bool = True  # drop L_CD pairs whose two paths are identical
    # log pi(y|x) in L_CD's margin: "sum" over the path's tokens [spec], or "mean" per token
    # (ours: the SFT term's scale; lada.train.losses.path_logprob)
    cd_norm: Literal["sum", "mean"] = "sum"
    # "skip" (ours): a sample whose preferred path does not reach P's gold answer gives no SFT
    # and no L_CD term (it still gets a reward), and an L_CD pair is kept only when its
    # rejected path is wrong; "keep": learn every path (spec behaviour). Default skip: with keep
    # the SLMs learn the LLM's wrong paths on private-domain questions (docs/testbed.md)
    unverified: Literal["keep", "skip"] = "skip"
    # rehearsal (ours): the LLM's distillation step also trains on up to this many of its own
    # paths of the round (those it wrote for the SLM-side picks) that reach P's gold answer, so
    # that learning short client paths does not wash out its multi-step skill; 0 = off (spec)
    # (the embedded default's 128; docs/method.md)
    llm_replay: int = 128
    # what the LLM rehearses (ours): "own" its own paths of the round that reach P's gold
    # answer (mostly the short questions it gets right); "gold" P's gold paths of labelled
    # questions, drawn evenly across numbers of steps (ServerRole.gold_replay_ids)
    # (the embedded default's gold: docs/results/default-teaches-both-ways.md)
    llm_replay_paths: Literal["own", "gold"] = "gold"
    # who teaches what (ours, lada.train.boundary): a teacher writes a path only for public
    # questions it can answer, and abstains (an empty path: learnt by nobody) on the others.
    # "labelled": the LLM teaches only where P has a label (spec §1: an unlabelled public
    # question names private entities that only a client can answer); "boundary": SLM k teaches
    # only questions inside its knowledge boundary (nearest-neighbour similarity to its own
    # training questions in its own features, at least the boundary_quantile-quantile of theirs
    # among themselves); "consistent": inside the boundary and self-consistent (at least
    # consistency_agree of consistency_samples sampled paths reach its greedy answer,
    # lada.eval.consistency); "all": every pick (the spec). Measured reasons: docs/testbed.md
    llm_teaches: Literal["labelled", "all"] = "labelled"
    slm_teaches: Literal["consistent", "boundary", "all"] = "consistent"
    boundary_quantile: float = 0.05
    boundary_reference: int = 1000  # at most this many distinct training questions as reference
    consistency_samples: int = 5
    consistency_agree: int = 4
    consistency_temperature: float = 0.7
    # the client's side of the same (ours): SLM k's distillation step also trains (SFT on the
    # gold path, no L_CD, no reward) on this many of its private training samples, drawn anew
    # each round, i.e. L_host on private data joins λ·L_CD in one step (spec §5.4 "L_host +
    # λ·L_CD") instead of the public paths overwriting what the local step taught; 0 = off
    slm_replay: int = 200
    # fairness (ours): the host alone (plugin none) gives its clients the same rehearsal: each
    # ends its local step with the slm_replay private samples LaDa's distillation step would
    # rehearse in that round (same draw, same slm_optim, same loss), so that a comparison with
    # LaDa differs in the public paths alone; false = the host alone is its own round only
    slm_replay_alone: bool = False
    # memory (ours): the LLM's distillation step also rehearses up to this many SLM paths of
    # earlier rounds (most recent first; on a labelled question only one that reached P's gold
    # answer, on an unlabelled one the role decides), so that the client knowledge it learnt in
    # one round is not forgotten by the next; 0 = off (256 measured: did not keep the LLM's
    # accuracy up, docs/results/default-teaches-both-ways.md)
    llm_memory: int = 0
    # the LLM side's L_CD on unlabelled public questions, where it prefers SLM k's path to its
    # own: "contrast" the spec's term; "floor" (ours) its own path's term is floored at the
    # reference, so the loss never pushes the LLM's own reasoning below where the step began
    # (lada.train.losses.contrastive_margin); "off" no L_CD there, SFT on SLM k's path only
    # (a departure, a diagnostic). The embedded default's floor: measured with the gold
    # rehearsal below, docs/results/default-teaches-both-ways.md
    llm_unlabelled_cd: Literal["contrast", "floor", "off"] = "floor"
    sft_weight: float = 1.0  # weight of SFT on the preferred path (the plain host's L_host)
    # the logit hosts' KL (fedmkt, fedcollm; their own settings: hosts.<name>), student side
    # (ours): "topk" = softmax over the teacher's k ids; "full" = over the vocab
    kd_student: Literal["topk", "full"] = "topk"
    # distillation steps are short (a few to tens of optimiser steps): warm-up is a fraction of
    # them, not the loop's fixed 20 steps, which would keep the whole step inside the warm-up
    slm_optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-3, epochs=2, warmup_ratio=0.1)
    )
    # the LLM's step (ours): lr 1e-4 x 3 epochs, chosen on fresh validation questions
    # (not the test sets) from a grid declared beforehand; an earlier 1e-3 x 15 took the LLM
    # from 45 % to 8 % on general questions in one round (docs/results/zoo-core.md)
    llm_optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-4, epochs=3, warmup_ratio=0.1)
    )
    max_new_tokens: int = 160  # length limit of generated reasoning paths
    gen_batch_size: int = 64

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "lambda_cd": ge(0),
            "beta": gt(0),
            "llm_replay": ge(0),
            "slm_replay": ge(0),
            "llm_memory": ge(0),
            "boundary_quantile": within(0, 1),
            "boundary_reference": ge(2, why=" (the threshold compares reference questions)"),
            "consistency_samples": ge(1),
            "consistency_agree": ge(0),
            "consistency_temperature": gt(0),
            "sft_weight": ge(0),
            "max_new_tokens": ge(1),
            "gen_batch_size": ge(1),
        }


@dataclass
class EvalConfig:
    max_new_tokens: int = 160
    batch_size: int = 64
    limit: int | None = None  # evaluate on the first N test samples per client (None = all)
    initial: bool = True  # evaluate the base models as "round 0" before training
    # clients send per-question correctness (one bit per test question per round: what the
    # bench's paired confidence intervals resample); false: only the accuracy and group counts
    per_question: bool = True

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "max_new_tokens": ge(1),
            "batch_size": ge(1),
            "limit": ge(1, none_ok=True, why=" (null: every test sample)"),
        }


@dataclass
class PrepareConfig:
    """`lada models prepare`: the tokenizer and the pretrained base checkpoints (ours)."""

    vocab_size: int = 512
    tokenizer_corpus: int = 4000  # synthetic samples the tokenizer is trained on
    llm_corpus: int = 32000  # general samples (all domains, general knowledge, 1–6 steps)
    llm_steps: int = 1000  # optimizer steps of LLM pretraining
    llm_lr: float = 3e-3
    slm_corpus: int = 8000  # "a little general data": short chains, general knowledge
    slm_max_steps_per_question: int = 2  # SLM pretraining: short chains (docs/testbed.md)
    slm_steps: int = 400
    slm_lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0
    workers: int = 2  # models pretrained in parallel processes (1 torch thread each)

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "vocab_size": ge(260, why=" (256 bytes + 4 special tokens)"),
            "tokenizer_corpus": ge(1),
            "llm_corpus": ge(1),
            "llm_steps": ge(1),
            "llm_lr": gt(0),
            "slm_corpus": ge(1),
            "slm_max_steps_per_question": ge(1),
            "slm_steps": ge(1),
            "slm_lr": gt(0),
            "batch_size": ge(1),
            "seed": ge(0),
            "workers": ge(1),
        }


@dataclass
class FaultSpec:
    """Inject a fault (tests and demos): client ``client`` fails ``task`` in ``round``."""

    client: int = 0
    round: int = 1
    task: str = "local_train"
    kind: Literal["raise", "delay", "corrupt"] = "raise"
    delay_s: float = 0.0
    # kind "corrupt": the client answers, and its reply is broken this way before it is sent
    # (lada.federation.corrupt.CORRUPTIONS); the server must reject it
    corruption: Literal["nan", "inf", "ids", "shape", "long_path", "task", "replay"] = "nan"

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {"client": ge(0), "round": ge(0), "delay_s": ge(0)}


@dataclass
class LimitsConfig:
    """What a message may hold (ours; lada.federation.validation, docs/threat-model.md): a reply
    or an instruction beyond these is rejected whole, its sender counted as missing."""

    # LaDa wire bytes of one message (lada.federation.protocol.encode); FedMKT's top-k logits
    # on all of a large P are the biggest legitimate messages (about 0.8 KB per token at k=128)
    max_message_bytes: int = 2**30
    max_path_chars: int = 20_000  # characters of one reasoning path (either direction)
    max_feature_dim: int = 65_536  # width of a client's feature vectors (its hidden size)
    max_top_k: int = 4096  # logits per token a LOGITS / DISTILL_LOGITS message may carry
    # |loss| of a reply (mean token NLLs, local training's mean loss): the filter's reward takes
    # exp(loss), which must stay finite
    max_abs_loss: float = 100.0
    # |x| of every other float a reply carries (features, margins, logits, weights): bounded so
    # that sums, squares and standardisation stay finite in float32
    max_abs_value: float = 1e6
    max_num_samples: int = 10**9  # a reply's num_samples (FedAvg weight, test set size)

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "max_message_bytes": ge(1024, why=" (bytes; a message's header alone takes ~100)"),
            "max_path_chars": ge(1),
            "max_feature_dim": ge(1),
            "max_top_k": ge(1),
            "max_abs_loss": gt(0),
            "max_abs_value": gt(0),
            "max_num_samples": ge(1),
        }


@dataclass
class FlowerConfig:
    """Flower engines (``engine: flower-sim``, and the ServerApp of a `flwr run` deployment)."""

    client_num_cpus: float = 1.0  # Ray CPUs per simulated client (ray_num_cpus / this = actors)
    client_num_gpus: float = 0.0  # Ray GPUs per simulated client
    ray_num_cpus: int | None = 2  # CPUs Ray may use in simulation (None = all cores)
    # give up on a reply after this long (None = wait; per-client timeout_s also applies): a
    # silent client holds the round no longer than this
    timeout_s: float | None = 3600.0
    wait_for_clients_s: float = (
        120.0  # at start, how long the ServerApp waits for every client's node
    )
    rejoin_wait_s: float = (
        0.0  # at each later round's start, wait this long for clients without a node
    )
    pull_interval_s: float = 0.1  # how often the ServerApp polls for replies
    # each client's SuperNode id (`flwr supernode register` prints it; docs/flower.md): a node
    # is accepted as client k only when its id is client_nodes[k]. None: a node's hello says
    # which client it is (trusted)
    client_nodes: list[int] | None = None

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "client_num_cpus": gt(0),
            "client_num_gpus": ge(0),
            "ray_num_cpus": ge(1, none_ok=True),
            "timeout_s": gt(0, none_ok=True),
            "wait_for_clients_s": ge(0),
            "rejoin_wait_s": ge(0),
            "pull_interval_s": gt(0),
        }


@dataclass
class ReportConfig:
    """Optional loggers (``tensorboard``: RUN/tensorboard/, needs ``pip install lada[tensorboard]``)."""

    to: list[Literal["tensorboard"]] = field(default_factory=list)


# the data-allocation strategies (lada.federation.allocation.STRATEGIES reads this list)
AllocationName = Literal[
    "lada",
    "all",
    "random",
    "random_labelled",
    "random_teachable",
    "perplexity",
    "ifd",
    "min_ce",
    "oracle",
]


@dataclass
class RunConfig:
    """One federated run: `lada run` reads this."""

    seed: int = 0
    rounds: int = 5
    # torch CPU threads of the run's process: 2 trains the zoo models 1.65x faster than 1 on an
    # idle 2-core box (measured); use 1 when several runs share the cores (tests, `lada bench`
    # jobs); None = torch's own default (all cores)
    threads: int | None = 2
    # the engine that carries the messages: one of the engine registry (lada.engines; built in:
    # inprocess, flower-sim)
    engine: str = "inprocess"
    # the host framework: a host registered in lada.hosts (built in: sft, fedcot, fedcollm,
    # fedmkt; docs/hosts.md); its settings are hosts.<name>
    host: str = "sft"
    plugin: Literal["lada", "none"] = "lada"  # "none": the host alone
    # which public ids each pair/direction gets with plugin lada (lada.federation.allocation)
    allocation: AllocationName = "lada"
    # ours, a diagnostic: also compute allocation=oracle's would-be picks every round, without
    # acting on them (oracle/round_NNN.json; the bench's selection precision)
    oracle_diagnostic: bool = False
    # ours, a control: with allocation=random_teachable, pick per learner, direction and round
    # as many as the run in this folder picked (its selections/round_NNN.json) instead of
    # filter.budget: random_teachable count-matched to that run (e.g. LaDa's, whose filters pick
    # at most the budget); None: the budget
    allocation_counts_from: str | None = None
    allocation_count: int | None = None  # baselines' count (None: filter.budget, else 10% P)
    # ours, logit hosts (fedmkt, fedcollm) with plugin lada: "picks" restricts the host's own
    # public transfer to the allocation's picks (spec §6, plug-in point 1); "all" keeps the host's
    # transfer on all of P, exactly as the host alone, and runs LaDa's path step (paths, path
    # loss + λ·L_CD, rewards) on the picks after it
    host_transfer: Literal["picks", "all"] = "picks"
    # each host's own settings, by host name (lada.hosts.<name>_config; a host without
    # settings has no section)
    hosts: Annotated[dict[str, Any], HOST_SECTIONS] = field(default_factory=default_host_settings)
    server: ModelConfig = field(default_factory=lambda: ModelConfig(model="llm-xs"))
    clients: list[ClientConfig] = field(
        default_factory=lambda: [
            ClientConfig(model="slm-xs"),
            ClientConfig(model="slm-s"),
            ClientConfig(model="slm-m"),
        ]
    )
    data: DataConfig = field(default_factory=DataConfig)
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # CPU budget (ours): at most 100 picks (10 % of P) per filter and round; every test sample
    filter: FilterConfig = field(default_factory=lambda: FilterConfig(budget=100))
    eval: EvalConfig = field(default_factory=EvalConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    faults: list[FaultSpec] = field(default_factory=list)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    flower: FlowerConfig = field(default_factory=FlowerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    keep_checkpoints: Literal["all", "last"] = "all"
    # the speed path (lada.accel): C kernels, the lean decoder, cast copies; recorded per run
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "seed": ge(0),
            "rounds": ge(1, why=" (rounds to run after the base evaluation)"),
            "threads": ge(1, none_ok=True),
            "allocation_count": ge(1, none_ok=True),
            "host": one_of(plugins.host_names, "host"),
            "engine": one_of(plugins.engine_names, "engine"),
        }
