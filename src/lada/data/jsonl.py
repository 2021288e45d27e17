"""JSONL reading and deterministic, atomic writing of samples."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from lada.data.errors import DataError
from lada.data.sample import Sample
from lada.utils.files import atomic_write_text


def dumps_sample(sample: Sample) -> str:
    """The canonical one-line JSON text of a sample (sorted keys, UTF-8, no trailing newline)."""
    return json.dumps(sample.to_dict(), sort_keys=True, ensure_ascii=False)


def write_jsonl(path: str | os.PathLike[str], samples: Iterable[Sample]) -> int:
    """Write one sample per line (deterministic bytes, atomic); returns the number written."""
    lines = [dumps_sample(s) + "\n" for s in samples]
    atomic_write_text(path, "".join(lines))
    return len(lines)


def read_jsonl_dicts(
    path: str | os.PathLike[str], errors: list[DataError] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_no, record)`` for each non-blank line (1-based line numbers).

    A line that is not a JSON object raises :class:`DataError`; when an ``errors`` list is
    given, the error is appended there instead and the line skipped.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror or e}", path=path) from e
    with f:
        for line_no, raw in enumerate(f, start=1):
            err: DataError | None = None
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                if not text.strip():
                    continue
                record = json.loads(text)
            except UnicodeDecodeError as e:
                err = DataError(f"invalid UTF-8 at byte {e.start}", path=path, line=line_no)
            except json.JSONDecodeError as e:
                err = DataError(
                    f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=line_no
                )
            else:
                if isinstance(record, dict):
                    yield line_no, record
                    continue
                err = DataError(
                    f"expected a JSON object, got {type(record).__name__}", path=path, line=line_no
                )
            if errors is None:
                raise err
            errors.append(err)
