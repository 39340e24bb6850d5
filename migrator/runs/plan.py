"""What a run would do, without doing it: ``migrator plan`` and ``migrator enqueue --plan``.

Reads the control plane only (one query for the selection, one for the registry, one for
earlier durations), so it stays fast at 10,000 datasets; nothing is written, no dataset opened.
Datasets are grouped by the move their cached revision makes (from -> to), and each revision
on the way says how many datasets it would touch and the operations it asks for.

With ``deep`` it also opens each dataset, read only (``migrator.runs.deep``): rows per
collection from the store's metadata, the revision the store records against the cached one,
and per revision the rows it reads or writes whole where that can be said.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import PlannedDataset, planned_datasets, quarantined_ids
from migrator.relational import alembic_config, current_revision, head_revision
from migrator.runs import store
from migrator.runs.deep import StoreRead, read_stores
from migrator.runs.goal import plan_goal
from migrator.runs.heavy import path_budget_s
from migrator.runs.request import RunRequest
from migrator.runs.rollout import stage_of
from migrator.runs.selection import select_datasets
from migrator.runs.stages import resolve_canaries, with_default_budget
from migrator.settings import Settings
from migrator.vector.base import DOWNGRADE, RevisionGoal
from migrator.vector.chain_config import configured_chain
from migrator.vector.revisions import RevisionChain
from migrator.vector.revisions.errors import RevisionError
from migrator.vector.revisions.history import DatasetContext
from migrator.vector.revisions.ops import AddColumn, AlterColumn, Backfill, CreateIndex, Operation
from migrator.vector.revisions.plan import plan_revision
from migrator.vector.revisions.providers import PROVIDERS
from migrator.vector.revisions.script import Revision
from migrator.vector.revisions.snapshot import Snapshot

Move = tuple[str | None, str | None]
HEAVY_SHOWN = 20  # heavy datasets a plan names (the count covers every one)
PLAN_CONTEXT = DatasetContext("plan", "plan", 384)


@dataclass
class MoveGroup:
    """The datasets that make one move, with their providers and servers."""

    version_from: str | None
    version_to: str | None
    datasets: int = 0
    providers: Counter[str] = field(default_factory=Counter)
    servers: Counter[str] = field(default_factory=Counter)
    estimate_s: float = 0.0
    refused: str | None = None  # why every dataset of this move would fail alone
    rows: list[PlannedDataset] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "from": self.version_from,
            "to": self.version_to,
            "datasets": self.datasets,
            "providers": dict(self.providers),
            "servers": len(self.servers),
            "estimate_s": round(self.estimate_s, 1),
        }
        if self.refused is not None:
            data["refused"] = self.refused
        return data


@dataclass
class RevisionStep:
    """One revision on the way: how many datasets apply (or undo) it, and what it does on each
    provider among them."""

    revision: str
    message: str
    direction: str
    datasets: int = 0
    providers: Counter[str] = field(default_factory=Counter)
    operations: dict[str, list[str]] = field(default_factory=dict)
    groups: list[MoveGroup] = field(default_factory=list, repr=False)
    rows_touched: dict[str, Any] | None = None  # with --deep, when an operation touches rows

    def to_dict(self) -> dict[str, Any]:
        data = {
            "revision": self.revision,
            "message": self.message,
            "direction": self.direction,
            "datasets": self.datasets,
            "providers": dict(self.providers),
            "operations": self.operations,
        }
        if self.rows_touched is not None:
            data["rows_touched"] = self.rows_touched
        return data


@dataclass
class RunPreview:
    """A plan: counts, moves, revisions, stages, the failure budget, an estimate, optionally
    each dataset."""

    relational_current: str | None
    relational_head: str | None
    vector_head: str | None
    vector_target: str | None
    direction: str
    datasets: int
    providers: dict[str, int]
    servers: int
    moves: list[MoveGroup]
    revisions: list[RevisionStep]
    stages: list[int]
    max_failures: int | None
    quarantined: int
    estimate_s: float | None
    estimate_basis: str
    heavy: dict[str, Any] = field(default_factory=dict)
    detail: list[dict[str, Any]] = field(default_factory=list)
    deep: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        skipped = ("moves", "revisions", "detail", "deep")
        data = {k: v for k, v in self.__dict__.items() if k not in skipped}
        data["moves"] = [m.to_dict() for m in self.moves]
        data["revisions"] = [r.to_dict() for r in self.revisions]
        if self.detail:
            data["detail"] = self.detail
        if self.deep is not None:
            data["deep"] = self.deep
        return data


async def preview_run(
    engine: AsyncEngine,
    settings: Settings,
    request: RunRequest,
    *,
    detail: bool = False,
    deep: bool = False,
) -> RunPreview:
    """What ``request`` would do now; changes nothing. ``deep`` opens each dataset to read."""
    config = alembic_config(settings)
    current = await current_revision(engine, config)
    head = head_revision(config)
    chain = configured_chain(settings)
    goal = plan_goal(settings, request.to_revision, downgrade=request.downgrade)
    ids = await select_datasets(engine, settings, request, goal)
    rollout = with_default_budget(await resolve_canaries(engine, request.rollout), settings)
    stages = rollout.stages(ids)
    found = await planned_datasets(engine, ids)
    history = await store.succeeded_durations_ms(engine)
    moves: dict[Move, MoveGroup] = {}
    for row in found:
        move = (row.cached_version, goal.target)
        group = moves.get(move)
        if group is None:
            group = moves[move] = MoveGroup(*move, refused=_refusal(chain, goal, row))
        group.datasets += 1
        group.providers[row.provider] += 1
        group.servers[row.server_key] += 1
        group.rows.append(row)
    total_s, basis = _estimate(moves, history, settings)
    staged = stage_of(stages)
    budgets = _heavy_budgets(chain, goal, found)
    revisions = _revision_steps(chain, goal, moves.values())
    reads = await read_stores(engine, settings, [r.id for r in found]) if deep else None
    if reads is not None:
        for step in revisions:
            step.rows_touched = _rows_touched(chain.get(step.revision), step, reads)
    return RunPreview(
        relational_current=current,
        relational_head=head,
        vector_head=chain.head,
        vector_target=goal.target,
        direction=goal.direction,
        datasets=len(found),
        providers=dict(Counter(r.provider for r in found)),
        servers=len({r.server_key for r in found}),
        moves=sorted(moves.values(), key=lambda m: _order(chain, m.version_from)),
        revisions=revisions,
        stages=[len(s) for s in stages if s],
        max_failures=rollout.budget(len(ids)),
        quarantined=len(await quarantined_ids(engine)),
        estimate_s=total_s,
        estimate_basis=basis,
        heavy=_heavy_report(settings, found, budgets),
        detail=[_detail(r, goal, staged.get(r.id, 0), budgets) for r in found] if detail else [],
        deep=_deep_report(found, reads) if reads is not None else None,
    )


def _path(chain: RevisionChain, goal: RevisionGoal, current: str | None) -> list[Revision]:
    if goal.direction == DOWNGRADE:
        return chain.downgrade_path(current, goal.target)
    return chain.upgrade_path(current, goal.target)


def _refusal(chain: RevisionChain, goal: RevisionGoal, row: PlannedDataset) -> str | None:
    """Why a run would fail this dataset before touching it (a revision the chain does not
    know, a target on the wrong side); None when it would migrate."""
    try:
        _path(chain, goal, row.cached_version)
    except RevisionError as exc:
        return str(exc)
    return None


def _order(chain: RevisionChain, revision: str | None) -> int:
    return chain.position(revision) if revision is None or revision in chain.ids() else -1


def _revision_steps(
    chain: RevisionChain, goal: RevisionGoal, moves: Iterable[MoveGroup]
) -> list[RevisionStep]:
    steps: dict[str, RevisionStep] = {}
    for group in moves:
        if group.refused is not None:
            continue
        for revision in _path(chain, goal, group.version_from):
            step = steps.get(revision.revision)
            if step is None:
                step = steps[revision.revision] = RevisionStep(
                    revision.revision, revision.message, goal.direction
                )
            step.datasets += group.datasets
            step.providers.update(group.providers)
            step.groups.append(group)
    order = {r: n for n, r in enumerate(chain.ids())}
    ordered = sorted(steps.values(), key=lambda s: order[s.revision])
    if goal.direction == DOWNGRADE:
        ordered.reverse()
    for step in ordered:
        revision = chain.get(step.revision)
        step.operations = {p: _operations(revision, goal.direction, p) for p in step.providers}
    return ordered


def _operations(revision: Revision, direction: str, provider: str) -> list[str]:
    """What the revision asks for on ``provider``, planned on an empty dataset as `vector
    check` does; a third-party provider's adapter applies the chain its own way."""
    if provider not in PROVIDERS:
        return ["(applied by the provider's own adapter)"]
    try:
        planned = plan_revision(revision, direction, provider, PLAN_CONTEXT, Snapshot())
    except RevisionError as exc:
        return [f"(depends on the dataset: {exc})"]
    if not planned and not revision.supports(provider):
        return ["(not for this provider: recorded only)"]
    return [operation.describe() for operation in planned]


def _row_collections(revision: Revision, direction: str, provider: str) -> set[str] | None:
    """The collections whose every row the revision reads or writes on ``provider``: a
    backfill, an index build, a column type change, and on LanceDB a new column with a value
    (written for each row; an all-null one is schema only). None when that cannot be said:
    a third-party provider, or operations that depend on the dataset."""
    if provider not in PROVIDERS:
        return None
    try:
        planned = plan_revision(revision, direction, provider, PLAN_CONTEXT, Snapshot())
    except RevisionError:
        return None
    return {c for c in (_touched(op, provider) for op in planned) if c is not None}


def _touched(op: Operation, provider: str) -> str | None:
    """The collection whose every row ``op`` reads or writes, if it does."""
    if isinstance(op, Backfill | CreateIndex):
        return op.collection
    if isinstance(op, AlterColumn) and op.type is not None:
        return op.collection
    if isinstance(op, AddColumn) and provider == "lancedb":
        # As the LanceDB executor does it: a vector or list column is added all-null.
        return None if op.type.is_vector or op.type.name == "list<string>" else op.collection
    return None


def _rows_touched(
    revision: Revision, step: RevisionStep, reads: dict[str, StoreRead]
) -> dict[str, Any] | None:
    """Rows of the step's datasets in the collections it touches whole, summed; the datasets
    whose rows cannot be said are counted apart. None when the revision touches no rows."""
    wanted = {p: _row_collections(revision, step.direction, p) for p in step.providers}
    collections = sorted({c for found in wanted.values() if found for c in found})
    total, unknown = 0, 0
    for group in step.groups:
        for row in group.rows:
            names = wanted.get(row.provider)
            read = reads.get(row.id)
            counts = read.rows if read is not None else None
            if names == set():
                continue  # nothing of this provider's is touched, whatever its store says
            if names is None or counts is None or any(counts.get(c, 0) is None for c in names):
                unknown += 1
            else:
                # A collection the store lacks yet is created on the way: no rows to touch.
                total += sum(counts.get(c) or 0 for c in names)
    if not collections and unknown == 0:
        return None
    return {"collections": collections, "rows": total, "datasets_unknown": unknown}


def _deep_report(found: list[PlannedDataset], reads: dict[str, StoreRead]) -> dict[str, Any]:
    """Per dataset what its store says; fleet totals of rows per collection."""
    per_dataset: list[dict[str, Any]] = []
    totals: Counter[str] = Counter()
    for row in found:
        read = reads.get(row.id) or StoreRead(row.id, row.cached_version, error="not registered")
        per_dataset.append({"id": row.id, "name": row.name, **read.to_dict()})
        totals.update({c: n for c, n in (read.rows or {}).items() if n is not None})
    return {
        "opened": sum(1 for r in reads.values() if r.error is None),
        "unreadable": sum(1 for r in reads.values() if r.error is not None),
        "drifted": sum(1 for r in reads.values() if r.drifted),
        "rows_not_reported": sum(1 for r in reads.values() if r.error is None and r.rows is None),
        "rows": dict(sorted(totals.items())),
        "datasets": per_dataset,
    }


def _detail(
    row: PlannedDataset, goal: RevisionGoal, stage: int, budgets: dict[str, float]
) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "provider": row.provider,
        "server": row.server_key,
        "from": row.cached_version,
        "to": goal.target,
        "stage": stage,
        "heavy_budget_s": budgets.get(row.id),
    }


def _heavy_budgets(
    chain: RevisionChain, goal: RevisionGoal, found: list[PlannedDataset]
) -> dict[str, float]:
    """The heavy datasets' budgets by id, as the run decides them (``migrator.runs.heavy``):
    one look per (provider, cached revision), not per dataset."""
    if not chain.heavy_revisions():
        return {}
    per_move: dict[tuple[str, str | None], float | None] = {}
    budgets: dict[str, float] = {}
    for row in found:
        key = (row.provider, row.cached_version)
        if key not in per_move:
            per_move[key] = path_budget_s(chain, row.provider, row.cached_version, goal)
        budget = per_move[key]
        if budget is not None:
            budgets[row.id] = budget
    return budgets


def _heavy_report(
    settings: Settings, found: list[PlannedDataset], budgets: dict[str, float]
) -> dict[str, Any]:
    """How many datasets are heavy, the longest budget, where they go; the first few named."""
    if not budgets:
        return {"datasets": 0}
    heavy = [row for row in found if row.id in budgets]
    heavy.sort(key=lambda row: -budgets[row.id])
    return {
        "datasets": len(heavy),
        "longest_budget_s": budgets[heavy[0].id],
        "queue": settings.heavy_queue,
        "per_server": settings.heavy_per_server_concurrency,
        "servers": len({row.server_key for row in heavy}),
        "shown": [
            {"id": row.id, "name": row.name, "budget_s": budgets[row.id]}
            for row in heavy[:HEAVY_SHOWN]
        ],
    }


def _estimate(
    moves: dict[Move, MoveGroup],
    history: dict[tuple[str | None, str | None], tuple[float, int]],
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
