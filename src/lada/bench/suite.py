"""Which runs the paper suite holds: hosts × methods × scenarios × seeds, plus ablations and
α/λ sensitivity (spec §7). Every run is a normal `lada run` with config overrides.

Methods (``plugin`` / ``allocation`` / other overrides):
  alone        plugin=none: the host framework without LaDa
  all, random, perplexity, ifd, min_ce
               plugin=lada with the filter replaced by that allocation baseline
               ("all" is also the "without filter" ablation)
  lada         plugin=lada, allocation=lada
  lada_keep    LaDa with host_transfer=all (ours, logit hosts): the host's own transfer stays on
               all of P and LaDa's path step runs on the picks after it (``grid`` plan only)
  no_cd        LaDa without the contrastive loss (distill.lambda_cd=0)
  no_explore   LaDa without exploration (filter.use_explore=false: ExploitNet only)
  random_teachable
               random picks among the candidates LaDa's filters see (the same teachability
               mask and budget, both sides; ours, a control)
  alpha=X      LaDa with filter.alpha=X: the reward's batch/sample weight α in
               r_i = α·σ(r_batch) + (1 − α)·σ(g_i), which f1 learns as it is (the spec)
  lambda=X     LaDa with distill.lambda_cd=X
  cd_mean      LaDa with distill.cd_norm=mean: L_CD on per-token mean log-probs (ours), the
               scale of the SFT term, instead of the spec's per-path sums

Fairness (ours): every bench run sets distill.slm_replay=0. That rehearsal of private training
samples inside the distillation step exists only on LaDa's side (a host alone has no
distillation step to put it in), so with it LaDa's SLMs would train on more private data than
the host alone's; the bench gives it to neither.

Suites: ``paper`` (below), ``core`` (:func:`core_suite`: hosts sft and fedmkt with the
embedded default's models, alone / random / LaDa, plus cd_mean with sft, 3 seeds: the
comparisons with paired CIs in the shortest time) and ``rehearsal`` (:func:`rehearsal_suite`:
the plain host's alone / random / LaDa with the same private rehearsal for both sides instead
of none).

The full plan runs every host alone and with LaDa in every scenario, and the baselines,
ablations and sensitivity with the plain host in ``hetero`` (``grid=True``: every baseline
everywhere). Scenarios (LLM llm-s unless said): hetero (slm-xs, slm-s, slm-m), homo (3 × slm-s), one2one
(1 client, slm-s), small_llm (the smaller LLM llm-xs, heterogeneous clients). FedCoLLM averages SLM weights, so it
runs only where the SLMs are homogeneous (homo, one2one); elsewhere it is listed as skipped.
FedMKT compares logits and needs one tokenizer: every zoo model shares one, so it runs in every
scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lada.config.presets import TINY
from lada.hosts import BUILTIN_HOSTS, host_class

HOSTS = BUILTIN_HOSTS  # the registry's built-in hosts, in its order (lada.hosts)
PLAIN_HOST = "sft"  # the host the baselines, ablations and sensitivity runs use
BASELINES = ("all", "random", "perplexity", "ifd", "min_ce")
MAIN_METHODS = ("alone", *BASELINES, "lada")
ABLATIONS = ("no_cd", "no_explore")  # "without filter" is the "all" run
ALPHAS = (0.25, 0.75)  # besides the default 0.5 (the lada run)
LAMBDAS = (0.5, 2.0)  # besides the default 1.0 (the lada run)

_HETERO = "clients=[{model: slm-xs}, {model: slm-s}, {model: slm-m}]"
# models are pinned here (not taken from the embedded default, which may change)
SCENARIOS: dict[str, list[str]] = {
    "hetero": ["server.model=llm-s", _HETERO],
    "homo": ["server.model=llm-s", "clients=[{model: slm-s}, {model: slm-s}, {model: slm-s}]"],
    "one2one": ["server.model=llm-s", "clients=[{model: slm-s}]"],
    "small_llm": ["server.model=llm-xs", _HETERO],
}
HOMOGENEOUS = {"homo", "one2one"}

# The quick (CI) suite: tiny data and models, 2 rounds, 1 seed, a subset of methods.
QUICK_OVERRIDES = [
    *TINY,
    "eval.initial=false",
    "local.optim.max_steps=4",
    "distill.slm_replay=0",
]
# The full suite's sizes (ours, CPU budget: 3 seeds in <= 2 hours on 2 cores, docs/bench.md):
# the embedded default with half the private training data and half of P (the filters' cap
# kept at 10 % of P), 3 rounds, no round-0 evaluation, one torch thread per job, and the same
# budget of LLM updates per round for every method (at most 100 optimiser steps: LaDa's LLM side
# needs about that many, while hosts that distil on all of P would take 2-3x longer).
# Sizes (ours): 5 rounds, each client's full test set (eval.limit=null: every question,
# saved per question for the paired CIs) and no private rehearsal on either side (fairness,
# above).
FULL_OVERRIDES = [
    "rounds=5",
    "eval.initial=false",
    "eval.limit=null",
    "threads=1",
    "data.split.train_per_client=500",
    "data.split.public_size=500",
    "filter.budget=50",
    "distill.llm_optim.steps_cap=100",
    "distill.slm_replay=0",
]
# The rehearsal suite (ours): the plain host with the spec's one-step client loss,
# L_host + λ·L_CD with L_host holding private data too (distill.slm_replay=200, the embedded
# default's), and the host alone given the same private rehearsal after its local step
# (distill.slm_replay_alone): the other fair option ("the same rehearsal for both").
REHEARSAL_OVERRIDES = [
    *(o for o in FULL_OVERRIDES if not o.startswith("distill.slm_replay=")),
    "distill.slm_replay=200",
    "distill.slm_replay_alone=true",
]
SUITES = ("paper", "core", "rehearsal", "decisive")  # decisive: lada.bench.decisive
CORE_HOSTS = ("sft", "fedmkt")
CORE_METHODS = ("alone", "lada", "random")  # in run order: with 2 jobs the main pair first
# random_labelled (ours): random picks, on the SLM side among P's labelled questions
# only (the LLM teaches no other): does LaDa's filter beat not asking where the teacher abstains?
REHEARSAL_METHODS = (*CORE_METHODS, "random_labelled")


@dataclass(frozen=True)
class RunSpec:
    host: str
    method: str
    scenario: str
    seed: int
    table: str = "main"  # main | ablation | sensitivity
    overrides: tuple[str, ...] = field(default=())
    # the name of a run of the same suite this one reads (it starts once that one has ended)
    after: str | None = None

    @property
    def name(self) -> str:
        m = self.method.replace("=", "")
        return f"{self.host}__{m}__{self.scenario}__s{self.seed}"


def method_overrides(method: str) -> list[str]:
    if method == "alone":
        return ["plugin=none"]
    if method in BASELINES:
        return ["plugin=lada", f"allocation={method}"]
    if method == "random_labelled":  # a control (ours): rehearsal suite only
        return ["plugin=lada", "allocation=random_labelled"]
    if method == "random_teachable":  # a control (ours): LaDa's mask and budget, random picks
        return ["plugin=lada", "allocation=random_teachable"]
    if method == "lada":
        return ["plugin=lada", "allocation=lada"]
    if method == "lada_keep":
        return ["plugin=lada", "allocation=lada", "host_transfer=all"]
    if method == "no_cd":
        return ["plugin=lada", "allocation=lada", "distill.lambda_cd=0"]
    if method == "no_explore":
        return ["plugin=lada", "allocation=lada", "filter.use_explore=false"]
    if method.startswith("alpha="):
        return ["plugin=lada", "allocation=lada", f"filter.alpha={method.split('=')[1]}"]
    if method == "alone_s5":
        # the host alone with a larger LLM step (lr 1e-3 x 15 epochs, the bench's 100-step cap
        # kept): a logit host learns P's gold texts, not SLM paths, and may take a larger step
        # than the one chosen for LaDa's path step; the stronger baseline is shown
        return ["plugin=none", "distill.llm_optim.lr=0.001", "distill.llm_optim.epochs=15"]
    if method == "cd_mean":
        return ["plugin=lada", "allocation=lada", "distill.cd_norm=mean"]
    if method.startswith("lambda="):
        return ["plugin=lada", "allocation=lada", f"distill.lambda_cd={method.split('=')[1]}"]
    raise ValueError(f"unknown method {method!r}")


def supported(host: str, scenario: str) -> bool:
    """A host that averages SLM weights runs only where the SLMs are homogeneous."""
    return not host_class(host).homogeneous_slms or scenario in HOMOGENEOUS


def _quick_plan() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every host alone and with LaDa in one scenario it supports; the plain host also with
    the random baseline."""
    plan = []
    for host in HOSTS:
        scen = next(s for s in ("hetero", "homo") if supported(host, s))
        plan.append(
            (host, scen, ("alone", "random", "lada") if host == PLAIN_HOST else ("alone", "lada"))
        )
    return plan


# the core suite's scenario: the embedded default's LLM and SLMs (not pinned: whatever
# RunConfig() holds, so it shares the model cache with `make run` and follows the testbed)
CORE_SCENARIO = "default"


def _spec(host: str, method: str, scenario: str, seed: int, table: str, base: list[str]) -> RunSpec:
    models = [] if scenario == CORE_SCENARIO else SCENARIOS[scenario]
    ov = [*base, f"seed={seed}", f"host={host}", *models, *method_overrides(method)]
    return RunSpec(host, method, scenario, seed, table, tuple(ov))


def paper_suite(
    quick: bool = False, seeds: int | None = None, grid: bool = False
) -> tuple[list[RunSpec], list[str]]:
    """(runs, skipped descriptions).

    The full plan (ours, sized so that 3 seeds fit in 2 hours on 2 cores; docs/bench.md):
    every host alone and with LaDa in every scenario it supports, the allocation baselines on
    the plain host in the heterogeneous scenario, and the ablations and α/λ sensitivity there.
    ``grid``: every baseline with every host in every scenario, and ``lada_keep`` with the logit
    hosts (110 runs per seed)."""
    base = QUICK_OVERRIDES if quick else FULL_OVERRIDES
    n_seeds = seeds if seeds is not None else (1 if quick else 3)
    runs: list[RunSpec] = []
    skipped: list[str] = []
    if quick:
        plan = _quick_plan()
        for seed in range(n_seeds):
            for host, scen, methods in plan:
                runs += [_spec(host, m, scen, seed, "main", base) for m in methods]
            runs.append(_spec("sft", "no_cd", "hetero", seed, "ablation", base))
        return runs, skipped
    for seed in range(n_seeds):
        for host in HOSTS:
            for scen in SCENARIOS:
                if not supported(host, scen):
                    if seed == 0:
                        skipped.append(f"{host} × {scen}: averaging SLMs needs homogeneous SLMs")
                    continue
                full = grid or (host, scen) == ("sft", "hetero")
                methods = MAIN_METHODS if full else ("alone", "lada")
                if grid and host_class(host).compares_logits:
                    methods = (*methods, "lada_keep")
                runs += [_spec(host, m, scen, seed, "main", base) for m in methods]
        runs += [_spec("sft", m, "hetero", seed, "ablation", base) for m in ABLATIONS]
        runs += [_spec("sft", f"alpha={a}", "hetero", seed, "sensitivity", base) for a in ALPHAS]
        runs += [_spec("sft", f"lambda={x}", "hetero", seed, "sensitivity", base) for x in LAMBDAS]
    if not grid:
        skipped.append(
            "allocation baselines with hosts other than sft and scenarios other than hetero "
            "(the 2-hour plan; `--grid` runs them all)"
        )
    return runs, skipped


def core_suite(seeds: int | None = None) -> tuple[list[RunSpec], list[str]]:
    """The core comparisons: hosts sft and fedmkt with the embedded default's models
    (scenario "default": its LLM and its heterogeneous SLMs), each alone, with random
    allocation and with LaDa, and LaDa with the per-token L_CD (cd_mean) on sft; the full
    suite's sizes, 3 seeds by default."""
    runs = []
    scen = CORE_SCENARIO
    for seed in range(3 if seeds is None else seeds):
        for host in CORE_HOSTS:
            runs += [_spec(host, m, scen, seed, "main", FULL_OVERRIDES) for m in CORE_METHODS]
        runs.append(_spec("sft", "cd_mean", scen, seed, "ablation", FULL_OVERRIDES))
        runs.append(_spec("fedmkt", "alone_s5", scen, seed, "main", FULL_OVERRIDES))
    return runs, ["other hosts and scenarios (the paper suite runs them)"]


def rehearsal_suite(seeds: int | None = None) -> tuple[list[RunSpec], list[str]]:
    """The plain host alone / random allocation / LaDa, and random picks among labelled P on the
    SLM side (``random_labelled``), with the same private rehearsal on both sides
    (:data:`REHEARSAL_OVERRIDES`), the embedded default's models, 3 seeds by default."""
    runs = []
    for seed in range(3 if seeds is None else seeds):
        runs += [
            _spec("sft", m, CORE_SCENARIO, seed, "main", REHEARSAL_OVERRIDES)
            for m in REHEARSAL_METHODS
        ]
    return runs, ["FedMKT: its LaDa step has no path step and so no private rehearsal"]
