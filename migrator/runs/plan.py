"""What a run would do, without doing it: ``migrator plan`` and ``migrator enqueue --plan``.

Reads the control plane only (one query for the selection, one for the registry, one for
earlier durations), so it stays fast at 10,000 datasets; nothing is written, no dataset opened.
Datasets are grouped by the move their cached version makes (from -> to).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import PlannedDataset, planned_datasets, quarantined_ids
from migrator.relational import alembic_config, current_revision, head_revision
from migrator.runs import store
from migrator.runs.request import RunRequest
from migrator.runs.rollout import stage_of
from migrator.runs.selection import select_datasets
from migrator.runs.stages import resolve_canaries, with_default_budget
from migrator.settings import Settings
from migrator.vector.schema import HEAD_VERSION

Move = tuple[int, int]


@dataclass
class MoveGroup:
    """The datasets that make one move, with their providers and servers."""

    version_from: int
    version_to: int
    datasets: int = 0
    providers: Counter[str] = field(default_factory=Counter)
    servers: Counter[str] = field(default_factory=Counter)
    estimate_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.version_from,
            "to": self.version_to,
            "datasets": self.datasets,
            "providers": dict(self.providers),
            "servers": len(self.servers),
            "estimate_s": round(self.estimate_s, 1),
        }


@dataclass
class RunPreview:
    """A plan: counts, moves, stages, the failure budget, an estimate, optionally each
    dataset."""

    relational_current: str | None
    relational_head: str | None
    datasets: int
    providers: dict[str, int]
    servers: int
    moves: list[MoveGroup]
    stages: list[int]
    max_failures: int | None
    quarantined: int
    estimate_s: float | None
    estimate_basis: str
    detail: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("moves", "detail")}
        data["moves"] = [m.to_dict() for m in self.moves]
        if self.detail:
            data["detail"] = self.detail
        return data


async def preview_run(
    engine: AsyncEngine, settings: Settings, request: RunRequest, *, detail: bool = False
) -> RunPreview:
    """What ``request`` would do now; changes nothing."""
    config = alembic_config(settings)
    current = await current_revision(engine, config)
    head = head_revision(config)
    ids = await select_datasets(engine, settings, request)
    rollout = with_default_budget(await resolve_canaries(engine, request.rollout), settings)
    stages = rollout.stages(ids)
    found = await planned_datasets(engine, ids)
    history = await store.succeeded_durations_ms(engine)
    moves: dict[Move, MoveGroup] = {}
    for row in found:
        group = moves.setdefault(
            _move(row), MoveGroup(row.cached_version, max(HEAD_VERSION, row.cached_version))
        )
        group.datasets += 1
        group.providers[row.provider] += 1
        group.servers[row.server_key] += 1
    total_s, basis = _estimate(moves, history, settings)
    staged = stage_of(stages)
    return RunPreview(
        relational_current=current,
        relational_head=head,
        datasets=len(found),
        providers=dict(Counter(r.provider for r in found)),
        servers=len({r.server_key for r in found}),
        moves=sorted(moves.values(), key=lambda m: (m.version_from, m.version_to)),
        stages=[len(s) for s in stages if s],
        max_failures=rollout.budget(len(ids)),
        quarantined=len(await quarantined_ids(engine)),
        estimate_s=total_s,
        estimate_basis=basis,
        detail=[_detail(r, staged.get(r.id, 0)) for r in found] if detail else [],
    )


def _move(row: PlannedDataset) -> Move:
    return row.cached_version, max(HEAD_VERSION, row.cached_version)


def _detail(row: PlannedDataset, stage: int) -> dict[str, Any]:
    version_from, version_to = _move(row)
    return {
        "id": row.id,
        "name": row.name,
        "provider": row.provider,
        "server": row.server_key,
        "from": version_from,
        "to": version_to,
        "stage": stage,
    }


def _estimate(
    moves: dict[Move, MoveGroup],
    history: dict[tuple[int | None, int | None], tuple[float, int]],
    settings: Settings,
) -> tuple[float | None, str]:
    """Wall time from earlier successful migrations of the same move (or of any move), spread
    over MIGRATION_CONCURRENCY; None when no run has succeeded on a dataset yet."""
    if not history:
        return None, "no earlier successful migration to go by"
    weight = sum(n for _, n in history.values())
    overall_ms = sum(avg * n for avg, n in history.values()) / weight
    serial_s = 0.0
    for move, group in moves.items():
        avg_ms, _ = history.get(move, (overall_ms, 0))
        group.estimate_s = avg_ms * group.datasets / 1000 / settings.migration_concurrency
        serial_s += avg_ms * group.datasets / 1000
    at_once = settings.migration_concurrency
    basis = f"mean of {weight} earlier successful migration(s), {at_once} at once"
    return serial_s / settings.migration_concurrency, basis
