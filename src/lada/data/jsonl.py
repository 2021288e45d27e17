"""JSONL reading and deterministic, atomic writing of samples."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

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


MAX_LINE_BYTES = 1 << 20  # ours: a record longer than 1 MiB is an error (GSM8K's are ~1 KB)
_CHUNK = 1 << 20


def _lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line_no, raw line)``; ``None`` for a line longer than ``max_bytes``, which is read
    past in chunks (never held in memory whole)."""
    line_no = 0
    while True:
        raw = f.readline(max_bytes + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) <= max_bytes or raw.endswith(b"\n") and len(raw) == max_bytes + 1:
            yield line_no, raw
            continue
        while raw and not raw.endswith(b"\n"):
            raw = f.readline(_CHUNK)
        yield line_no, None


def read_jsonl_dicts(
    path: str | os.PathLike[str],
    errors: list[DataError] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_no, record)`` for each non-blank line (1-based line numbers).

    A line that is not a JSON object, is not UTF-8 or is longer than ``max_line_bytes`` raises
    :class:`DataError`; when an ``errors`` list is given, the error is appended there instead
    and the line skipped. A UTF-8 byte-order mark on the first line is accepted.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror or e}", path=path) from e
    with f:
        for line_no, raw in _lines(f, max_line_bytes):
            err: DataError | None = None
            try:
                if raw is None:
                    raise DataError(
                        f"line longer than {max_line_bytes} bytes (a record is one line of JSON)",
                        path=path,
                        line=line_no,
                    )
                if line_no == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                    raise DataError(
                        "the file is UTF-16 (byte-order mark): save it as UTF-8",
                        path=path,
                        line=1,
                    )
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                if not text.strip():
                    continue
                record = json.loads(text)
            except DataError as e:
                err = e
            except UnicodeDecodeError as e:
                err = DataError(f"invalid UTF-8 at byte {e.start}", path=path, line=line_no)
            except json.JSONDecodeError as e:
                err = DataError(
                    f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=line_no
                )
            except (ValueError, RecursionError) as e:  # a 5000-digit number, deep nesting
                err = DataError(f"invalid JSON: {e}", path=path, line=line_no)
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
