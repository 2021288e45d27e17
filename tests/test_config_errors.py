"""Bad configs: every bad override, key and value is reported at once, one line each, naming
the override that set it or the file and line it was written on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lada.config import ConfigError, build, load_config
from lada.config.locate import locate, yaml_key_lines
from lada.config.overrides import apply_overrides


def _lines(path: Path | None, overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return str(e.value).splitlines()


def test_every_bad_override_is_reported_with_the_override_that_set_it() -> None:
    assert _lines(
        None,
        [
            "rounds=two",
            "seed",  # no "="
            "rounds.x=1",  # rounds is a number
            "distill.beta=-5",
            "eval.limit=5",  # a good one among them
            "filter.alhpa=0.3",
        ],
    ) == [
        "override 'seed': expected key=value",
        "override 'rounds.x=1': 'rounds' is 'two', not a mapping",
        "override 'rounds=two': config key 'rounds': expected an integer, got 'two'",
        "override 'distill.beta=-5': config key 'distill.beta' = -5.0: must be > 0",
        "override 'filter.alhpa=0.3': config key 'filter.alhpa' = 0.3: unknown key; "
        "did you mean 'filter.alpha'?",
    ]


def test_every_bad_key_in_a_file_is_reported_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        "rounds: 3\n"
        "seed: x\n"  # fixed by the override seed=1: no problem
        "distill:\n"
        "  betta: 0.5\n"
        "  beta: none\n"
        "clients:\n"
        "  - model: slm-s\n"
        "    timeout_s: soon\n"
        "    train_range: [0, z]\n"
        "filter:\n"
        "  budget: 0\n"
    )
    assert _lines(p, ["threads=many", "seed=1"]) == [
        "override 'threads=many': config key 'threads': expected an integer, got 'many'",
        f"{p}:8: config key 'clients.0.timeout_s': expected a number, got 'soon'",
        f"{p}:9: config key 'clients.0.train_range.1': expected an integer, got 'z'",
        f"{p}:4: config key 'distill.betta' = 0.5: unknown key; did you mean 'distill.beta'?",
        f"{p}:5: config key 'distill.beta': expected a number, got 'none'",
        f"{p}:11: config key 'filter.budget' = 0: must be >= 1 or null (null: no cap)",
    ]


def test_cross_field_problems_are_located_too(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("filter:\n  budget: 5000\n")
    assert _lines(p, ["nokey"])[0] == "override 'nokey': expected key=value"
    assert _lines(p, ["nokey"])[1].startswith(f"{p}:2: config key 'filter.budget' = 5000")


def test_apply_overrides_applies_the_good_ones_and_reports_all_bad_ones() -> None:
    data = {"a": {"b": 1}, "l": [{"x": 1}]}
    with pytest.raises(ConfigError) as e:
        apply_overrides(data, ["a.b=2", "nokey", "a.b.c=3", "l.y=4", "l.1.x=5"])
    assert str(e.value).splitlines() == [
        "override 'nokey': expected key=value",
        "override 'a.b.c=3': 'a.b' is 2, not a mapping",
        "override 'l.y': 'y' is not a list index",
    ]
    assert data == {"a": {"b": 2}, "l": [{"x": 1}, {"x": 5}]}


@dataclass
class _Either:
    n: int | bool = 0
    m: dict[str, int] | None = None


def test_a_union_names_why_each_option_refused_and_dicts_report_every_value() -> None:
    with pytest.raises(ConfigError) as e:
        build(_Either, {"n": "x", "m": {"a": "1", "b": 2, "c": None}}, source="f.yaml")
    assert str(e.value).splitlines() == [
        "f.yaml: config key '_Either.n': 'x' matches none of int | bool "
        "(expected an integer, got 'x'; expected true/false, got 'x')",
        "f.yaml: config key '_Either.m.a': expected an integer, got '1'",
        "f.yaml: config key '_Either.m.c': expected an integer, got None",
    ]
    assert build(_Either, {"n": True, "m": {"a": 1}}) == _Either(True, {"a": 1})


def test_yaml_key_lines_and_locate() -> None:
    lines = yaml_key_lines("a: 1\nb:\n  c: 2\nl:\n  - x: 3\n  - 4\n")
    assert lines == {"a": 1, "b": 2, "b.c": 3, "l": 4, "l.0": 5, "l.0.x": 5, "l.1": 6}
    assert yaml_key_lines("a: [\n") == {}  # broken YAML: no lines (load_yaml reports it)
    got = locate(
        ["config key 'b.c.d': bad", "config key 'a' = 1: bad", "host x needs y", "config key 'z'"],
        "f.yaml",
        lines,
        ["a=1", "a=2"],
    )
    assert got == [
        "f.yaml:3: config key 'b.c.d': bad",  # innermost written key around it
        "override 'a=2': config key 'a' = 1: bad",  # the last override of the key
        "f.yaml: host x needs y",
        "f.yaml: config key 'z'",
    ]
    assert locate(["config key 'a': bad"]) == ["config key 'a': bad"]
