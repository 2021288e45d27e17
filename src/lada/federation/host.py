"""The host interface: a host framework (spec §6) as one plug-in.

Modelled on Flower's ``Strategy`` (the round asks the strategy what to do at fixed points) and
TRL's trainer + config pairs (a host brings its own settings and checks). A host is one class in
one module; :mod:`lada.hosts` registers the built-in ones by name (``RunConfig.host``), and the
round (:func:`lada.federation.round.run_round`) sees only this interface:

=====================  ==================================================================
``check(cfg)``         refuse configurations the host cannot run (before anything is written)
``after_local(rnd)``   the host's own step after the clients' local training (FedCoLLM: FedAvg)
``exchange(rnd, p)``   its public exchange on the picks ``p`` (paths, logits, ...)
``learn(rnd, p, x)``   both learners' steps on what was exchanged; returns :class:`Learned`
``client_handlers``    client-side task handlers the host adds or replaces (``task -> handler``)
``host_loss``          L_host on the preferred paths of a path-distillation step
``slm_prompt``         the prompt an SLM answers at evaluation (the format the host trains)
=====================  ==================================================================

The base class *is* the plain host's behaviour (SFT on private data, the two-way exchange of
reasoning paths, L_host = sft_weight·NLL): a new host overrides only what differs. LaDa enters a
host only through the three plug-in points of :class:`lada.federation.plugin.LadaPlugin`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

from lada.federation.context import Learned, Picks, RoundContext
from lada.federation.protocol import Payload, Task
from lada.federation.server import ServerRole

DIRECTIONS = ("S", "L")  # S: an SLM learns from the LLM; L: the LLM learns from an SLM


ClientHandler = Callable[[Payload], Payload]


def bind_handlers(
    role: Any, handlers: Mapping[str, Callable[[Any, Any], Payload]]
) -> dict[str, ClientHandler]:
    """``{task: handler(role, ins)}`` → ``{task: handler(ins)}`` for one client role."""
    return {task: partial(fn, role) for task, fn in handlers.items()}


class Host:
    """A host framework; subclass it, set :attr:`name` and register it
    (:func:`lada.hosts.registry.register_host`). Class attributes describe it to the round,
    the config checks and the bench suite."""

    name: ClassVar[str] = "paths"
    # the public-transfer directions it has (S: LLM → SLM, L: SLM → LLM)
    directions: ClassVar[tuple[str, ...]] = DIRECTIONS
    # whether it has a public exchange of its own, without LaDa (the plain host has none)
    exchanges_alone: ClassVar[bool] = True
    # whether it compares logits (one shared tokenizer needed; ``host_transfer=all`` allowed)
    compares_logits: ClassVar[bool] = False
    # whether it averages SLM weights (all clients must hold the same model)
    homogeneous_slms: ClassVar[bool] = False
    # whether the server holds a copy of the clients' SLM (ServerRole.slm)
    server_holds_slm: ClassVar[bool] = False
    # whether its SLM-side step is the path step (task ``distill``: the step that holds
    # ``distill.slm_replay``'s private rehearsal); a host with its own learning step says False
    slm_learns_paths: ClassVar[bool] = True
    # whether its own transfer runs on P's gold texts (a logit host): an unlabelled public
    # sample is then never a candidate (lada.federation.teachable)
    transfers_gold: ClassVar[bool] = False
    # its settings dataclass (``hosts.<name>`` of a run config; None: none). Built-in hosts name
    # theirs in lada.plugins (a light module, read by config checks without torch)
    settings_class: ClassVar[type | None] = None

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings  # its hosts.<name> section (an instance of its settings class)

    # ---- configuration ------------------------------------------------------------------

    def check(self, cfg: Any) -> None:
        """Raise :class:`lada.config.overrides.ConfigError` for a config this host cannot run
        (``cfg``: the RunConfig)."""

    # ---- the round (server side) --------------------------------------------------------

    def after_local(self, rnd: RoundContext) -> None:
        """The host's step after the clients' local training (none by default)."""

    def teachable(self, rnd: RoundContext, directions: tuple[str, ...], generate: bool) -> Any:
        """Which public samples each teacher will teach this round, per client and direction
        (a :class:`lada.federation.teachable.Teachable`), known before allocation; ``generate``
        False (``filter.mask: none``): what the host can transfer, no paths written."""
        from lada.federation.teachable import teachable

        return teachable(rnd, directions, needs_label=self.transfers_gold, generate=generate)

    def exchange(self, rnd: RoundContext, picks: Picks) -> Any:
        """The public exchange on ``picks``; what it returns goes to :meth:`learn`. Default:
        reasoning paths both ways (:func:`lada.federation.paths.exchange_paths`)."""
        from lada.federation.paths import exchange_paths

        return exchange_paths(rnd, picks)

    def learn(self, rnd: RoundContext, picks: Picks, exchanged: Any) -> Learned:
        """Both learners' steps on what was exchanged. Default: each SLM learns the LLM's paths
        (task ``distill``), the LLM the SLMs' (:func:`lada.federation.paths.learn_paths`)."""
        from lada.federation.paths import learn_paths

        return learn_paths(rnd, picks, exchanged)

    def expected_reply(self, server: ServerRole, task: Task | str) -> Any:
        """What every reply to one of this host's tasks must match (a
        :class:`lada.federation.validation.Expected`), or None (the reply checks of
        :mod:`lada.federation.guard`)."""
        return None

    # ---- the client side ----------------------------------------------------------------

    def client_handlers(self, role: Any) -> Mapping[str, ClientHandler]:
        """Task handlers this host adds to a client (``role``: the ClientRole)."""
        return {}

    def host_loss(self, cfg: Any, tokenizer: Any, preferred: Sequence[str]) -> Any:
        """L_host on the preferred paths of a path-distillation step (a
        :data:`lada.train.distill.HostLoss`); default the plain host's sft_weight·NLL."""
        from lada.train.distill import sft_host_loss

        return sft_host_loss(cfg, tokenizer, preferred)

    def slm_prompt(self, prompt: str) -> str:
        """What an SLM of this host is asked, at evaluation, for a question's ``prompt``
        (:meth:`lada.data.sample.Sample.prompt`): the input format the host trains it to
        answer in. Default: the prompt itself."""
        return prompt


__all__ = [
    "DIRECTIONS",
    "ClientHandler",
    "Host",
    "Learned",
    "Picks",
    "RoundContext",
    "bind_handlers",
]
