"""Configs: the embedded default, YAML files, dotted overrides and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lada.config import ConfigError, RunConfig, load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_is_the_embedded_default() -> None:
    assert load_config() == RunConfig()
    assert yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()) == to_dict(RunConfig())


def test_dotted_overrides_and_types() -> None:
    cfg = load_config(
        None,
        [
            "rounds=2",
            "clients.0.model=slm-m",
            "filter.alpha=0.25",
            "filter.budget=null",
            "distill.slm_optim.lr=1e-4",
        ],
    )
    assert cfg.rounds == 2 and cfg.clients[0].model == "slm-m" and cfg.clients[1].model == "slm-s"
    assert cfg.filter.alpha == 0.25 and cfg.filter.budget is None
    assert cfg.distill.slm_optim.lr == 1e-4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rounds=two", "config key 'rounds': expected an integer"),
        ("filter.alhpa=0.3", "'filter.alhpa' = 0.3: unknown key; did you mean 'filter.alpha'"),
        ("distill.preference=votes", "is not one of"),
        ("rounds", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, [override])


def test_partial_yaml_merges_onto_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("rounds: 3\ndistill:\n  beta: 0.5\n")
    cfg = load_config(p)
    assert cfg.rounds == 3 and cfg.distill.beta == 0.5 and cfg.distill.lambda_cd == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: 3\n  beta: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("distill:\n  betta: 0.5\n")
    with pytest.raises(
        ConfigError,
        match=r"typo.yaml:2: config key 'distill.betta' = 0.5: unknown key; did you mean 'distill.beta'",
    ):
        load_config(typo)


def test_real_model_config_is_valid() -> None:
    cfg = load_config(ROOT / "configs" / "real-gsm8k.yaml")
    assert cfg.data.kind == "files" and cfg.data.format == "gsm8k"
    assert all(c.lora is not None and c.lora.r == 8 for c in cfg.clients)
    assert cfg.server.dtype == "bfloat16" and cfg.filter.budget is None


def test_every_problem_of_a_file_at_once_with_key_and_value(tmp_path: Path) -> None:
    """Unknown key, wrong type, negative lr, a probability outside [0, 1], budget > |P|: one
    error naming the file, each key and each bad value."""
    p = tmp_path / "bad.yaml"
    p.write_text(
        "roundz: 3\n"
        "eval: {batch_size: many}\n"
        "local: {optim: {lr: -0.01}}\n"
        "filter: {alpha: 1.5, budget: 2000}\n"
        "distill: {fedcot_alpha: -0.1}\n"
    )
    with pytest.raises(ConfigError) as info, pytest.warns(UserWarning, match="fedcot_alpha"):
        load_config(p)
    lines = str(info.value).splitlines()
    assert sorted(line.split(": ", 1)[0] for line in lines) == [f"{p}:{n}" for n in range(1, 6)]
    text = str(info.value)
    for needle in (
        "'roundz' = 3: unknown key; did you mean 'rounds'?",
        "'eval.batch_size': expected an integer, got 'many'",
        "'local.optim.lr' = -0.01: must be > 0",
        "'filter.alpha' = 1.5: must lie in [0, 1]",
        # an old key, read as its new one, located on the line it was written
        "'hosts.fedcot.alpha' = -0.1: must lie in [0, 1]",
    ):
        assert needle in text, (needle, text)
    # budget vs |P| is a rule across fields: checked once the fields are valid
    p.write_text("filter: {budget: 2000}\n")
    with pytest.raises(ConfigError, match=r"'filter.budget' = 2000: exceeds \|P\| = 1000"):
        load_config(p)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_a_choice_spelled_like_a_yaml_boolean_is_read_as_the_choice(tmp_path: Path) -> None:
    """YAML 1.1 reads `off` as False; a string choice named `off` still means the choice, in an
    override and in a file, and a plain boolean where none of the choices is one stays an error."""
    cfg = load_config(None, ["runtime.accel=off", "distill.llm_unlabelled_cd=off"])
    assert cfg.runtime.accel == "off" and cfg.distill.llm_unlabelled_cd == "off"
    p = tmp_path / "c.yaml"
    p.write_text("server:\n  chat_template: off\n")
    assert load_config(p).server.chat_template == "off"
    with pytest.raises(ConfigError, match="distill.preference"):
        load_config(None, ["distill.preference=off"])
