"""The one sample type for reasoning data, and its text format.

Every model in LaDa is trained on ``prompt(sample) -> target(sample)``:

    prompt:  "<question>\n(A) 12 (B) 15 (C) 9 (D) 20\n"      (options line only for MC)
    target:  "<step 1>\n<step 2>\n...\nAnswer: B"

A reasoning *path* is any target-shaped text (a rationale ending in one ``Answer:`` line);
teachers and students exchange paths, never private samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AnswerType = Literal["mc", "number"]
LETTERS = "ABCDEFGH"
ANSWER_PREFIX = "Answer:"


@dataclass(frozen=True)
class Sample:
    """A reasoning sample: question, optional choices, rationale steps and final answer.

    ``answer`` is a letter (``"B"``) for ``answer_type == "mc"`` and a canonical number string
    (``"72"``, ``"-3"``, ``"2.5"``) for ``"number"``. ``meta`` carries generator facts (number of
    steps, which knowledge a question needs) used for analysis only, never shown to a model.
    """

    id: str
    domain: str
    question: str
    answer: str
    answer_type: AnswerType
    steps: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_steps(self) -> int:
        return int(self.meta.get("num_steps", len(self.steps)))

    def prompt(self) -> str:
        return format_prompt(self.question, self.choices)

    def target(self) -> str:
        return format_path(self.steps, self.answer)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = list(self.steps)
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        choices = d.get("choices")
        return cls(
            id=str(d["id"]),
            domain=str(d["domain"]),
            question=str(d["question"]),
            answer=str(d["answer"]),
            answer_type=d["answer_type"],
            steps=tuple(str(s) for s in d.get("steps") or ()),
            choices=tuple(str(c) for c in choices) if choices is not None else None,
            meta=dict(d.get("meta") or {}),
        )


def format_prompt(question: str, choices: tuple[str, ...] | list[str] | None) -> str:
    text = question.strip() + "\n"
    if choices:
        text += " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices)) + "\n"
    return text


def format_path(steps: tuple[str, ...] | list[str], answer: str) -> str:
    lines = [s.strip() for s in steps if s.strip()]
    lines.append(f"{ANSWER_PREFIX} {answer}")
    return "\n".join(lines)
