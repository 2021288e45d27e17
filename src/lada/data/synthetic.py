"""A synthetic multi-domain reasoning benchmark sized for tiny CPU models.

Each domain has 10 entities with a hidden integer *rate* (pills per box, coins per plum...). A
question names ``n`` entities with counts and asks for the total; the rates are never stated,
so answering needs domain knowledge, and ``n`` (the number of steps) sets the difficulty:

    Ava buys 3 plum, 2 fig and 3 leek. How many coins?
    plum 3*5=15
    fig 2*7=14, 15+14=29
    leek 3*2=6, 29+6=35
    Answer: 35

The first ``n_general`` entities of a domain are *general* knowledge (may appear in general or
pretraining data); the others are *private* (only in that domain's client data and in public-set
questions). The world (rates) comes from ``knowledge_seed``, shared by every split; samples come
from a separate ``seed``. Everything is a pure function of its arguments.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lada.data.sample import LETTERS, Sample

__all__ = [
    "DOMAIN_CATALOG",
    "DomainSpec",
    "Entity",
    "Knowledge",
    "SyntheticConfig",
    "World",
    "general_corpus",
    "generate",
    "make_world",
]

Knowledge = Literal["general", "private", "mixed", "any"]


@dataclass(frozen=True)
class DomainTemplate:
    """How a domain's questions read: ``"{name} {verb} {items}. How many {unit}?"``.

    ``container`` (``("box", "boxes")``) turns ``"2 zinc"`` into ``"2 boxes of zinc"``.
    """

    verb: str
    unit: str
    entities: tuple[str, ...]
    container: tuple[str, str] | None = None


DOMAIN_CATALOG: dict[str, DomainTemplate] = {
    "market": DomainTemplate(
        "buys",
        "coins",
        ("plum", "fig", "lime", "kiwi", "pear", "date", "yam", "leek", "okra", "bean"),
    ),
    "pharmacy": DomainTemplate(
        "takes",
        "pills",
        (
            "zinc",
            "iron",
            "folate",
            "biotin",
            "iodine",
            "niacin",
            "retinol",
            "calcium",
            "boron",
            "copper",
        ),
        ("box", "boxes"),
    ),
    "workshop": DomainTemplate(
        "runs",
        "parts",
        ("lathe", "drill", "press", "saw", "loom", "kiln", "forge", "mill", "vise", "hoist"),
    ),
    "garden": DomainTemplate(
        "plants",
        "seeds",
        ("tulip", "rose", "lily", "daisy", "iris", "poppy", "aster", "lotus", "peony", "orchid"),
        ("bed", "beds"),
    ),
    "transit": DomainTemplate(
        "fills",
        "riders",
        ("tram", "ferry", "cab", "metro", "coach", "barge", "jeep", "van", "bus", "tug"),
    ),
    "bakery": DomainTemplate(
        "bakes",
        "eggs",
        ("bun", "scone", "tart", "bagel", "muffin", "pie", "waffle", "donut", "roll", "cake"),
        ("tray", "trays"),
    ),
}

NAMES = ("Ava", "Ben", "Cy", "Dan", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lou")


@dataclass(frozen=True)
class SyntheticConfig:
    """Every number of the synthetic benchmark (defaults: 4 domains, 1 to 6 steps, 4 options)."""

    domains: tuple[str, ...] = ("market", "pharmacy", "workshop", "garden")
    entities_per_domain: int = 10
    n_general: int = 6
    rate_min: int = 2
    rate_max: int = 9
    count_min: int = 1
    count_max: int = 3
    knowledge_seed: int = 1234
    min_steps: int = 1
    max_steps: int = 6
    step_weights: tuple[float, ...] | None = None  # one weight per step count min..max
    answer_format: Literal["mc", "number"] = "number"
    n_choices: int = 4
    distractor_offset_max: int = 3  # "total +- d" distractors use d in 1..this

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))
        if self.step_weights is not None:
            object.__setattr__(self, "step_weights", tuple(float(w) for w in self.step_weights))
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"SyntheticConfig: {msg}")

        need(len(self.domains) > 0, "at least one domain")
        need(len(set(self.domains)) == len(self.domains), f"duplicate domains {self.domains}")
        for d in self.domains:
            need(d in DOMAIN_CATALOG, f"unknown domain {d!r} (known: {sorted(DOMAIN_CATALOG)})")
        most = min(len(DOMAIN_CATALOG[d].entities) for d in self.domains)
        need(2 <= self.entities_per_domain <= most, f"entities_per_domain must be 2..{most}")
        need(
            1 <= self.n_general < self.entities_per_domain,
            "n_general must leave at least one private entity",
        )
        need(1 <= self.rate_min <= self.rate_max, "need 1 <= rate_min <= rate_max")
        need(1 <= self.count_min <= self.count_max, "need 1 <= count_min <= count_max")
        need(
            1 <= self.min_steps <= self.max_steps <= self.entities_per_domain,
            "need 1 <= min_steps <= max_steps <= entities_per_domain",
        )
        if self.step_weights is not None:
            need(
                len(self.step_weights) == self.max_steps - self.min_steps + 1,
                "step_weights needs one weight per step count in min_steps..max_steps",
            )
            need(
                all(w >= 0 for w in self.step_weights) and sum(self.step_weights) > 0,
                "step_weights must be >= 0 with a positive sum",
            )
        need(self.answer_format in ("mc", "number"), "answer_format must be 'mc' or 'number'")
        need(2 <= self.n_choices <= len(LETTERS), f"n_choices must be 2..{len(LETTERS)}")
        need(self.distractor_offset_max >= 1, "distractor_offset_max must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["domains"] = list(self.domains)
        d["step_weights"] = list(self.step_weights) if self.step_weights is not None else None
        return d


@dataclass(frozen=True)
class Entity:
    name: str
    domain: str
    rate: int
    private: bool


@dataclass(frozen=True)
class DomainSpec:
    name: str
    template: DomainTemplate
    entities: tuple[Entity, ...]

    @property
    def unit(self) -> str:
        return self.template.unit

    @property
    def general(self) -> tuple[Entity, ...]:
        return tuple(e for e in self.entities if not e.private)

    @property
    def private(self) -> tuple[Entity, ...]:
        return tuple(e for e in self.entities if e.private)


@dataclass(frozen=True)
class World:
    """The hidden knowledge: every domain's entities, their rates and general/private flags."""

    config: SyntheticConfig
    domains: tuple[DomainSpec, ...]
    _by_name: dict[str, DomainSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({d.name: d for d in self.domains})

    @property
    def domain_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    def domain(self, name: str) -> DomainSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"domain {name!r} not in this world {self.domain_names}") from None

    def rate(self, entity: str) -> int:
        for d in self.domains:
            for e in d.entities:
                if e.name == entity:
                    return e.rate
        raise KeyError(f"unknown entity {entity!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "knowledge_seed": self.config.knowledge_seed,
            "domains": {
                d.name: {
                    "unit": d.unit,
                    "entities": [
                        {"name": e.name, "rate": e.rate, "private": e.private} for e in d.entities
                    ],
                }
                for d in self.domains
            },
        }


def make_world(cfg: SyntheticConfig | None = None) -> World:
    """Draw every entity's rate from ``cfg.knowledge_seed`` (per domain, so adding a domain
    leaves the others' rates unchanged)."""
    cfg = cfg or SyntheticConfig()
    specs = []
    for name in cfg.domains:
        template = DOMAIN_CATALOG[name]
        rng = random.Random(f"lada-world/{cfg.knowledge_seed}/{name}")
        entities = tuple(
            Entity(ent, name, rng.randint(cfg.rate_min, cfg.rate_max), i >= cfg.n_general)
            for i, ent in enumerate(template.entities[: cfg.entities_per_domain])
        )
        specs.append(DomainSpec(name, template, entities))
    return World(cfg, tuple(specs))


# ---------------------------------------------------------------------------------------------
# sample construction


def _item(template: DomainTemplate, count: int, entity: str) -> str:
    if template.container is None:
        return f"{count} {entity}"
    one, many = template.container
    return f"{count} {one if count == 1 else many} of {entity}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _question(spec: DomainSpec, person: str, counts: list[int], entities: list[Entity]) -> str:
    items = [_item(spec.template, c, e.name) for c, e in zip(counts, entities, strict=True)]
    return f"{person} {spec.template.verb} {_join(items)}. How many {spec.unit}?"


def _steps(counts: list[int], entities: list[Entity]) -> tuple[list[str], int]:
    lines: list[str] = []
    total = 0
    for i, (c, e) in enumerate(zip(counts, entities, strict=True)):
        product = c * e.rate
        head = f"{e.name} {c}*{e.rate}={product}"
        if i == 0:
            lines.append(head)
        else:
            lines.append(f"{head}, {total}+{product}={total + product}")
        total += product
    return lines, total


def _distractors(
    rng: random.Random, total: int, counts: list[int], entities: list[Entity], k: int, offset: int
) -> list[int]:
    """``k`` distinct positive wrong totals: one product dropped or counted twice, one rate off
    by +-1, or the total +-d. How many lie below the total is drawn uniformly from 0..k (as far
    as positive values allow), so the correct option's rank among the options gives nothing
    away."""
    pool: set[int] = set()
    for c, e in zip(counts, entities, strict=True):
        product = c * e.rate
        if len(counts) > 1:
            pool.add(total - product)
        pool.update((total + product, total + c, total - c))
    pool.update(total + s * d for d in range(1, offset + 1) for s in (1, -1))
    below = sorted(v for v in pool if 0 < v < total)
    above = sorted(v for v in pool if v > total)
    n_below = min(rng.randint(0, k), len(below))
    extra = max(above) + 1
    while len(above) < k - n_below:  # never needed with the defaults; kept for safety
        above.append(extra)
        extra += 1
    return rng.sample(below, n_below) + rng.sample(above, k - n_below)


def _make_sample(
    world: World,
    rng: random.Random,
    sid: str,
    domain: str,
    n_steps: int,
    want_private: bool | None,
    answer_format: Literal["mc", "number"],
) -> Sample:
    cfg = world.config
    spec = world.domain(domain)
    pool = spec.general if want_private is False else spec.entities
    while True:  # uniform over the allowed entity sets (rejection)
        chosen = rng.sample(pool, n_steps)
        if want_private is not True or any(e.private for e in chosen):
            break
    counts = [rng.randint(cfg.count_min, cfg.count_max) for _ in chosen]
    person = rng.choice(NAMES)
    steps, total = _steps(counts, chosen)
    meta: dict[str, Any] = {
        "num_steps": n_steps,
        "entities": [e.name for e in chosen],
        "counts": counts,
        "private": any(e.private for e in chosen),
        "kind": "private" if any(e.private for e in chosen) else "general",
        "total": total,
    }
    question = _question(spec, person, counts, chosen)
    if answer_format == "number":
        return Sample(sid, domain, question, str(total), "number", tuple(steps), None, meta)
    wrong = _distractors(rng, total, counts, chosen, cfg.n_choices - 1, cfg.distractor_offset_max)
    rng.shuffle(wrong)
    pos = rng.randrange(cfg.n_choices)
    options = wrong[:pos] + [total] + wrong[pos:]
    return Sample(
        sid, domain, question, LETTERS[pos], "mc", tuple(steps), tuple(map(str, options)), meta
    )


def _exact_counts(weights: Sequence[float], n: int) -> list[int]:
    """Split ``n`` by ``weights`` exactly (largest remainder, ties to the earlier index)."""
    total = float(sum(weights))
    raw = [w / total * n for w in weights]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def generate(
    world: World,
    n: int,
    *,
    seed: int,
    domains: Sequence[str] | None = None,
    domain_weights: Sequence[float] | None = None,
    knowledge: Knowledge = "any",
    private_fraction: float = 0.5,
    steps: tuple[int, int] | None = None,
    answer_format: Literal["mc", "number"] | None = None,
    id_prefix: str = "syn",
    step_weights: Sequence[float] | None = None,
) -> list[Sample]:
    """``n`` samples, deterministic given the arguments; ids ``f"{id_prefix}-{i:05d}"``.

    Domains are split exactly (evenly, or by ``domain_weights``) and shuffled. ``knowledge``:
    "private" = every question names >= 1 private entity; "general" = only general entities;
    "mixed" = exactly ``round(private_fraction * n)`` questions are private, the rest general;
    "any" = no constraint. ``steps`` (default: the config's range) is drawn per question with
    ``step_weights`` (one per step count min_steps..max_steps; default: the config's) if set, else
    uniformly. A general question can name at most
    ``n_general`` entities, so its step range is capped there.
    """
    cfg = world.config
    domains = tuple(domains) if domains is not None else world.domain_names
    for d in domains:
        world.domain(d)
    if domain_weights is not None and len(domain_weights) != len(domains):
        raise ValueError("domain_weights needs one weight per domain")
    if knowledge not in ("general", "private", "mixed", "any"):
        raise ValueError(f"unknown knowledge {knowledge!r}")
    if not 0.0 <= private_fraction <= 1.0:
        raise ValueError("private_fraction must be in [0, 1]")
    lo, hi = steps if steps is not None else (cfg.min_steps, cfg.max_steps)
    if not 1 <= lo <= hi <= cfg.entities_per_domain:
        raise ValueError(f"steps must satisfy 1 <= lo <= hi <= {cfg.entities_per_domain}")
    fmt = answer_format or cfg.answer_format
    if fmt not in ("mc", "number"):
        raise ValueError(f"unknown answer_format {fmt!r}")

    sw = tuple(step_weights) if step_weights is not None else cfg.step_weights
    if sw is not None and len(sw) != cfg.max_steps - cfg.min_steps + 1:
        raise ValueError("step_weights needs one weight per step count in min_steps..max_steps")

    def step_weights_for(top: int) -> tuple[list[int], list[float]]:
        values = list(range(lo, top + 1))
        if sw is None:
            return values, [1.0] * len(values)
        weights = [
            sw[v - cfg.min_steps] if cfg.min_steps <= v <= cfg.max_steps else 0.0 for v in values
        ]
        if sum(weights) <= 0:
            raise ValueError(f"step_weights give no weight to steps {lo}..{top}")
        return values, weights

    rng = random.Random(f"lada-synthetic/{seed}")
    dom_counts = _exact_counts(domain_weights or [1.0] * len(domains), n)
    dom_list = [d for d, c in zip(domains, dom_counts, strict=True) for _ in range(c)]
    rng.shuffle(dom_list)
    if knowledge == "mixed":
        n_private = round(private_fraction * n)
        flags: list[bool | None] = [True] * n_private + [False] * (n - n_private)
        rng.shuffle(flags)
    else:
        flag = {"private": True, "general": False, "any": None}[knowledge]
        flags = [flag] * n
    all_steps = general_steps = step_weights_for(hi)
    if False in flags:  # general questions: at most n_general distinct general entities
        if lo > cfg.n_general:
            raise ValueError(f"general questions need steps <= n_general={cfg.n_general}")
        general_steps = step_weights_for(min(hi, cfg.n_general))
    samples = []
    for i, (domain, want_private) in enumerate(zip(dom_list, flags, strict=True)):
        values, weights = general_steps if want_private is False else all_steps
        n_steps = rng.choices(values, weights)[0]
        samples.append(
            _make_sample(world, rng, f"{id_prefix}-{i:05d}", domain, n_steps, want_private, fmt)
        )
    return samples


def general_corpus(
    world: World,
    n: int,
    seed: int,
    steps: tuple[int, int] = (1, 6),
    *,
    answer_format: Literal["mc", "number"] | None = None,
    id_prefix: str = "general",
) -> list[Sample]:
    """General-knowledge samples of every domain: a server LLM's "pretraining" data, or with
    ``steps=(1, 2)`` the SLMs' little general data. Steps are capped at ``n_general``."""
    lo, hi = steps
    return generate(
        world,
        n,
        seed=seed,
        knowledge="general",
        steps=(lo, min(hi, world.config.n_general)),
        answer_format=answer_format,
        id_prefix=id_prefix,
    )
