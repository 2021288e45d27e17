"""Where a bad config value was written: a config file's line, or the override that set it.

A problem line names its dotted key (``config key 'filter.budget' = 0: …``, see
:func:`lada.config.validate.problem`); :func:`locate` prefixes it with its source, so that a
value set on the command line is not blamed on the file, and one from the file names its line:

    configs/run.yaml:12: config key 'distill.beta' = -5.0: must be > 0
    override 'rounds=two': config key 'rounds': expected an integer, got 'two'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import yaml

KEY = re.compile(r"^config key '([^']*)'")


def yaml_key_lines(text: str) -> dict[str, int]:
    """Dotted key (list items by index) -> 1-based line where it is written in a YAML text."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            items = [(str(k.value), k, v) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            items = [(str(i), v, v) for i, v in enumerate(node.value)]
        else:
            return
        for name, key_node, value_node in items:
            lines[prefix + name] = key_node.start_mark.line + 1
            walk(value_node, prefix + name + ".")

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def _related(a: str, b: str) -> bool:
    """One dotted key lies inside the other (or they are the same)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def locate(
    problems: Iterable[str],
    file: str | None = None,
    key_lines: dict[str, int] | None = None,
    overrides: Sequence[str | tuple[str, str]] = (),
) -> list[str]:
    """Each problem line prefixed by its source: the last override that set its key, else the
    file with the line of the innermost written key around it, else the file alone. An
    override may be given as (as applied, as typed): an old key read as a new one is named as
    the user typed it."""
    pairs = [(o, o) if isinstance(o, str) else o for o in overrides]
    set_by = [(item.split("=", 1)[0].strip(), typed) for item, typed in pairs if "=" in item]
    out = []
    for line in problems:
        m = KEY.match(line)
        key = m.group(1) if m else None
        override = None
        if key is not None:
            override = next((item for k, item in reversed(set_by) if _related(k, key)), None)
        if override is not None:
            out.append(f"override {override!r}: {line}")
            continue
        where = file
        parts = key.split(".") if key else []
        for n in range(len(parts), 0, -1):
            number = (key_lines or {}).get(".".join(parts[:n]))
            if number is not None:
                where = f"{file}:{number}"
                break
        out.append(f"{where}: {line}" if where else line)
    return out
