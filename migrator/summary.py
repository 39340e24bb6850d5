"""What a run reports: small, JSON-ready, free of secrets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from migrator.urls import escape_controls


def quoted_name(name: str | None) -> str:
    """The name as one quoted, escaped token, so a log line stays one greppable line."""
    return f'"{escape_controls(name)}"' if name is not None else "?"


def dataset_label(dataset_id: str, name: str | None) -> str:
    """How a person sees a dataset: ``name (id)``, or the id alone when the name is unknown."""
    return f"{escape_controls(name)} ({dataset_id})" if name else dataset_id


def cut_name(name: str | None, max_chars: int) -> str | None:
    """A name shortened for a size-bound place (a Celery result); the id stays whole."""
    if name is None or len(name) <= max_chars:
        return name
    return name[: max_chars - 3] + "..."


@dataclass(frozen=True)
class DatasetOutcome:
    """One dataset's result in one run; small enough for a Celery result (well under 1 KB)."""

    dataset_id: str
    status: str
    version_before: int | None = None
    version_after: int | None = None
    duration_ms: int = 0
    error: str | None = None
    step: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return dataset_label(self.dataset_id, self.name)

    def to_dict(self, *, name_max_chars: int | None = None) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        if name_max_chars is not None and self.name is not None:
            data["name"] = cut_name(self.name, name_max_chars)
        return data


@dataclass
class RunSummary:
    run_id: str
    trigger: str
    status: str
    relational_before: str | None
    relational_after: str | None
    counts: dict[str, int] = field(default_factory=dict)
    datasets: list[DatasetOutcome] = field(default_factory=list)
    duration_s: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self, *, datasets: str = "all") -> dict[str, Any]:
        """``datasets='failed'`` keeps only the ones that need attention (large runs)."""
        data = asdict(self)
        kept = self.datasets
        if datasets == "failed":
            kept = [d for d in self.datasets if d.status in ("failed", "timed_out")]
        data["datasets"] = [d.to_dict() for d in kept]
        return data
