"""Dataclass configs from YAML and ``key=value`` overrides (TRL-style, no magic).

``build(cls, data)`` turns nested dicts into nested dataclasses, checking every key and type and
naming the dotted path of anything wrong. ``apply_overrides(data, ["rounds=2",
"clients.0.model=slm-xs"])`` edits the nested dict first; values are parsed as YAML scalars, so
``2`` is an int, ``1e-3`` a float, ``null`` None and ``[1, 2]`` a list.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml

from lada.utils.errors import ConfigError  # re-exported: lada.config.ConfigError
from lada.utils.rules import closest

T = TypeVar("T")


def parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict/list structure (in place, also returned).

    A list index may name an existing item or the next one (``clients.3`` of 3 clients appends
    a fourth); an index further out is refused, so that ``clients.5.model=…`` cannot silently
    create clients with default settings. Every bad override is reported, one line each, in one
    ConfigError raised after the good ones are applied."""
    problems = []
    for item in overrides:
        try:
            _apply_one(data, item)
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("\n".join(problems))
    return data


def _apply_one(data: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, parts[: depth + 1], create=True)
    last = parts[-1]
    value = parse_value(raw)
    if isinstance(node, list):
        idx = _list_slot(node, last, parts)
        if idx == len(node):
            node.append({})
        node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {item!r}: {'.'.join(parts[:-1])!r} is {node!r}, not a mapping")


def _list_slot(node: list[Any], part: str, parts: list[str]) -> int:
    """The index ``part`` of list ``node``: an existing item or the next one (appended)."""
    idx = _index(part, parts)
    if idx < 0 or idx > len(node):
        where = ".".join(parts[:-1]) or "list"
        raise ConfigError(
            f"override {'.'.join(parts)!r}: {where} has {len(node)} item(s) "
            f"(indices 0..{len(node) - 1}); index {idx} would "
            + ("count from the end" if idx < 0 else f"add {idx - len(node) + 1} with defaults")
            + f"; use an index up to {len(node)} (the next one appends one item)"
        )
    return idx


def _index(part: str, parts: list[str]) -> int:
    try:
        return int(part)
    except ValueError:
        raise ConfigError(f"override {'.'.join(parts)!r}: {part!r} is not a list index") from None


def _child(node: Any, part: str, path: list[str], create: bool) -> Any:
    if isinstance(node, list):
        idx = _list_slot(node, part, path)
        if idx == len(node):
            node.append({})
        return node[idx]
    if not isinstance(node, dict):
        raise ConfigError(f"override {'.'.join(path)!r}: parent is not a mapping")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict/list/scalars, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# a check of one dataclass's converted field values: (type, {field: value}, dotted path) -> the
# problems found, one line each (lada.config.validate.check_fields is the one used by configs)
FieldCheck = typing.Callable[[type, dict[str, Any], str], list[str]]


def build(
    cls: type[T],
    data: Any,
    path: str | None = None,
    source: str | None = None,
    check: FieldCheck | None = None,
) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError.

    Every problem is reported at once (one line each), with the closest known key for a typo.
    ``path`` prefixes the dotted keys in messages (default: the class name; ``""``: none).
    ``check`` (optional) is run on each dataclass's converted values before it is built, so that
    out-of-range values are reported by key instead of failing in ``__post_init__``."""
    return _convert(cls, data, cls.__name__ if path is None else path, source, check)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _fail(path: str, source: str | None, msg: str) -> ConfigError:
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}config key '{path}': {msg}")


def _unknown_key(
    path: str, key: str, value: Any, names: set[str], source: str | None
) -> ConfigError:
    near = closest(key, names)
    hint = f"did you mean '{_join(path, near)}'?" if near else f"known: {', '.join(sorted(names))}"
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}config key '{_join(path, key)}' = {value!r}: unknown key; {hint}")


def _retired_key(path: str, key: str, new: str, source: str | None) -> ConfigError:
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}config key '{_join(path, key)}' was replaced by '{new}'")


def _convert(
    tp: Any, value: Any, path: str, source: str | None, check: FieldCheck | None = None
) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *extras = get_args(tp)
        sections = next((e for e in extras if hasattr(e, "classes")), None)
        if sections is not None:
            return _sections(sections, value, path, source, check)
        return _convert(base, value, path, source, check)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own (more telling) error
            return _convert(options[0], value, path, source, check)
        reasons = []
        for arg in options:
            try:
                return _convert(arg, value, path, None, check)
            except ConfigError as e:  # each option's reason goes into the message
                own = f"config key '{path}': "
                reasons += [line.removeprefix(own) for line in str(e).splitlines()]
        raise _fail(path, source, f"{value!r} matches none of {tp} ({'; '.join(reasons)})")
    if origin is Literal:
        if isinstance(value, bool) and not any(isinstance(c, bool) for c in get_args(tp)):
            value = _yaml_bool_word(value, get_args(tp))
        if value not in get_args(tp):
            choices = [str(c) for c in get_args(tp)]
            near = closest(str(value), choices)
            hint = f"; did you mean {near!r}?" if near else ""
            raise _fail(path, source, f"{value!r} is not one of {list(get_args(tp))}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise _fail(path, source, f"expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp, include_extras=True)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        retired = getattr(tp, "RETIRED_KEYS", {})
        problems = [
            str(_retired_key(path, k, retired[k], source))
            if k in retired
            else str(_unknown_key(path, k, v, names, source))
            for k, v in value.items()
            if k not in names
        ]
        kwargs = {}
        for k, v in value.items():
            if k not in names:
                continue
            try:
                kwargs[k] = _convert(hints[k], v, _join(path, k), source, check)
            except ConfigError as e:
                problems.append(str(e))
        if check is not None:  # on the fields that converted (the others are reported)
            where = f"{source}: " if source else ""
            problems += [f"{where}{line}" for line in check(tp, kwargs, path)]
        if problems:
            raise ConfigError("\n".join(problems))
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as e:
            raise _fail(path or tp.__name__, source, str(e)) from None
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _fail(path, source, f"expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = []
        problems = []
        for i, v in enumerate(value):
            try:
                items.append(_convert(item_tp, v, _join(path, i), source, check))
            except ConfigError as e:
                problems.append(str(e))
        if problems:
            raise ConfigError("\n".join(problems))
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(path, source, f"expected a mapping, got {value!r}")
        _, vt = get_args(tp) or (Any, Any)
        out, problems = {}, []
        for k, v in value.items():
            try:
                out[k] = _convert(vt, v, _join(path, k), source, check)
            except ConfigError as e:
                problems.append(str(e))
        if problems:
            raise ConfigError("\n".join(problems))
        return out
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(path, source, f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, source, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, source, f"expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _fail(path, source, f"expected a string, got {value!r}")
        return str(value)
    return value


# YAML 1.1 (PyYAML) reads these words as booleans; a string choice spelled so is meant as text
_YAML_BOOL_WORDS = {True: ("on", "yes", "true", "y"), False: ("off", "no", "false", "n")}


def _yaml_bool_word(value: bool, choices: tuple[Any, ...]) -> Any:
    """The string choice that YAML turned into ``value`` (``accel: off`` reads as False), or
    ``value`` itself when no choice or several are spelled as that boolean."""
    words = [c for c in choices if isinstance(c, str) and c.lower() in _YAML_BOOL_WORDS[value]]
    return words[0] if len(words) == 1 else value


def _sections(
    sections: Any, value: Any, path: str, source: str | None, check: FieldCheck | None
) -> dict[str, Any]:
    """A plug-in mapping (``hosts``): each known plug-in's settings dataclass, by name; a
    plug-in not given gets its defaults (:class:`lada.config.sections.Sections`)."""
    classes = sections.classes()
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _fail(path, source, f"expected a mapping of {sections.kind} names, got {value!r}")
    out: dict[str, Any] = {}
    problems = []
    for name, v in value.items():
        key = _join(path, name)
        if name not in classes:
            near = closest(str(name), classes)
            hint = (
                f"did you mean '{_join(path, near)}'?"
                if near
                else (f"{sections.kind}s: {', '.join(classes)}")
            )
            where = f"{source}: " if source else ""
            problems.append(f"{where}config key '{key}' = {v!r}: unknown {sections.kind}; {hint}")
            continue
        cls = classes[name]
        if cls is None:
            if v not in (None, {}):
                problems.append(str(_fail(key, source, f"{sections.kind} {name} has no settings")))
            continue
        try:
            out[name] = _convert(cls, v, key, source, check)
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("\n".join(problems))
    for name, cls in classes.items():
        if cls is not None and name not in out:
            out[name] = cls()
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` onto ``base`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{line}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data
