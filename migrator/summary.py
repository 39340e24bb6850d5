"""What a run reports: small, JSON-ready, free of secrets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


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
