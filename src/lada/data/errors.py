"""The one error type for bad data: it names the file, the line and the field."""

from __future__ import annotations

from os import PathLike


class DataError(ValueError):
    """A data file (or record) is invalid.

    ``str(err)`` reads ``"data/x.jsonl:12: field 'answer': cannot parse number from '#### abc'"``;
    each location part is left out when unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        what = f"field {self.field!r}: " if self.field is not None else ""
        return f"{where}{what}{self.message}"

    def located(self, path: str | PathLike[str], line: int | None) -> DataError:
        """A copy of this error placed at ``path:line`` (keeps the field and message)."""
        return DataError(self.message, path=path, line=line, field=self.field)
