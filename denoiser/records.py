"""The record of one input: a typed value everywhere, JSON only as a line of scores.jsonl."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

STATUS_OK, STATUS_FAILED = "ok", "failed"


def json_text(value, **options) -> str:
    """`value` as JSON text that encodes as UTF-8: a file name whose bytes were not UTF-8 (kept by the OS layer as lone
    surrogates) keeps them as `\\u` escapes, which read back as the same name."""
    return json.dumps(value, ensure_ascii=False, **options).encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Record:
    """What became of one input: the line scores.jsonl holds for it (README: "The scores.jsonl schema")."""

    input: str
    output: str | None = None
    heatmap: str | None = None
    status: str = STATUS_OK
    score: float | None = None
    anomalous: bool | None = None
    raw_score: float | None = None
    error: str | None = None
    width: int | None = None
    height: int | None = None
    seconds: float | None = None
    model: str | None = None
    precision: str | None = None
    scorer: str | None = None
    time: str | None = None
    claim: str | None = None  # the daemon's claim ID (watch's records only)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def megapixels(self) -> float:
        """The input's size in megapixels (0 where it was never read)."""
        return (self.width or 0) * (self.height or 0) / 1e6

    def but(self, **changes) -> Record:
        """The same record with some fields changed."""
        return replace(self, **changes)

    def line(self) -> str:
        """The record as one scores.jsonl line, newline included (no `claim` key outside the daemon)."""
        values = asdict(self)
        if self.claim is None:
            del values["claim"]
        return json_text(values) + "\n"

    @classmethod
    def parse(cls, line: str | bytes) -> Record | None:
        """The record a scores.jsonl line holds, or None for a line that is not one (torn, foreign, blank)."""
        try:
            values = json.loads(line)
        except ValueError:  # not JSON, or bytes that are not UTF-8
            return None
        if not isinstance(values, dict) or not isinstance(values.get("input"), str):
            return None
        return cls(**{name: values[name] for name in FIELDS if name in values})


FIELDS = tuple(field.name for field in fields(Record))
