"""Rolling a run out in stages: a canary first, then waves, under a failure budget.

A run's datasets are split into stages (stage 0 the canary, then the waves; one stage when
neither is asked for). A stage whose datasets did not all succeed halts a staged run: every
dataset not yet started is recorded ``deferred`` and the run ends ``halted``. The failure budget
is checked before each dataset starts, on both paths, from the run's own records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from migrator.errors import UsageError

_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class Share:
    """A count (``10``) or a percentage of a run's datasets (``5%``)."""

    value: float
    percent: bool

    def of(self, total: int) -> int:
        """How many datasets of ``total``; a percentage rounds up, so it is at least one."""
        if not self.percent:
            return int(self.value)
        return min(total, max(1, math.ceil(total * self.value / 100))) if total else 0


def parse_share(text: str, what: str) -> Share:
    """``10`` or ``5%`` as a ``Share``; ``UsageError`` naming ``what`` for anything else."""
    found = _SHARE.match(text)
    if found is None:
        raise UsageError(f"{what} must be a count or a percentage like 5%, got {text!r}")
    value, percent = float(found.group(1)), bool(found.group(2))
    if percent and not 0 < value <= 100:
        raise UsageError(f"{what} as a percentage must be above 0% and at most 100%, got {text}")
    if not percent and (value != int(value) or value < 1):
        raise UsageError(f"{what} must be a whole number of at least 1, got {text}")
    return Share(value, percent)


@dataclass(frozen=True)
class Rollout:
    """How a run rolls out: ``canary`` (a ``Share``) or named ``canary_ids``, ``wave_size``
    for the rest, and ``max_failures`` (a ``Share``; None: no budget)."""

    canary: Share | None = None
    canary_ids: tuple[str, ...] = ()
    wave_size: int | None = None
    max_failures: Share | None = None

    @property
    def staged(self) -> bool:
        """True when a failed stage halts the run (a canary or waves were asked for)."""
        return bool(self.canary or self.canary_ids or self.wave_size)

    def to_message(self) -> dict[str, Any]:
        """JSON types only, for a task message."""
        return {
            "canary": _share_text(self.canary),
            "canary_ids": list(self.canary_ids),
            "wave_size": self.wave_size,
            "max_failures": _share_text(self.max_failures),
        }

    @classmethod
    def from_message(cls, data: dict[str, Any] | None) -> Rollout:
        """The rollout a message (or ``to_message``) carries; ``UsageError`` when malformed."""
        data = data or {}
        canary, budget = data.get("canary"), data.get("max_failures")
        wave_size = data.get("wave_size")
        if wave_size is not None and (not isinstance(wave_size, int) or wave_size < 1):
            raise UsageError(f"--wave-size must be a whole number of at least 1, got {wave_size}")
        ids = data.get("canary_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise UsageError("--canary-dataset values must be dataset ids")
        return cls(
            canary=parse_share(str(canary), "--canary") if canary is not None else None,
            canary_ids=tuple(ids),
            wave_size=wave_size,
            max_failures=parse_share(str(budget), "--max-failures") if budget else None,
        )

    def stages(self, dataset_ids: Sequence[str]) -> list[list[str]]:
        """The run's datasets in stages: the canary first, then waves of ``wave_size``."""
        chosen = set(self.canary_ids)
        missing = [d for d in self.canary_ids if d not in set(dataset_ids)]
        if missing:
            raise UsageError(
                f"--canary-dataset {missing[0]} is not among the datasets this run takes "
                "(not pending, quarantined, or outside --dataset)"
            )
        canary = [d for d in dataset_ids if d in chosen]
        rest = [d for d in dataset_ids if d not in chosen]
        if self.canary is not None:
            extra = self.canary.of(len(dataset_ids)) - len(canary)
            canary, rest = canary + rest[: max(extra, 0)], rest[max(extra, 0) :]
        size = self.wave_size or len(rest) or 1
        waves = [rest[i : i + size] for i in range(0, len(rest), size)]
        return [s for s in ([canary] if canary else []) + waves if s] or [[]]

    def budget(self, total: int) -> int | None:
        """The failure budget of a run of ``total`` datasets; None: no budget."""
        return self.max_failures.of(total) if self.max_failures else None


def _share_text(share: Share | None) -> str | None:
    if share is None:
        return None
    number = f"{share.value:g}"
    return f"{number}%" if share.percent else number


def stage_of(stages: Sequence[Sequence[str]]) -> dict[str, int]:
    """Each dataset's stage number."""
    return {d: n for n, ids in enumerate(stages) for d in ids}


def budget_reason(failed: int, budget: int) -> str:
    """Why a dataset was deferred once the budget was spent."""
    return f"failure budget spent: {failed} dataset(s) failed (max {budget}); not started"


def halt_reason(stage: int, failed: int, size: int, *, canary: bool) -> str:
    """Why the rest of a staged run was deferred."""
    what = "canary" if canary and stage == 0 else f"wave {stage + (0 if canary else 1)}"
    return f"run halted: {failed} of {size} dataset(s) of the {what} did not succeed; not started"
