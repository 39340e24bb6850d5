"""The revision chain, validated like Alembic's ``RevisionMap`` but linear only.

``build_chain`` refuses two heads, two bases, a missing or unknown down revision, a cycle and a
duplicate id, each naming its file. A folder may start on top of the built-in revisions: a
``down_revision`` it does not hold is looked up there, and the built-ins up to it join the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from migrator.vector.revisions.errors import (
    DuplicateRevisionError,
    HeavyBudgetError,
    InvalidBudgetError,
    MissingDowngradeError,
    MultipleHeadsError,
    RevisionCycleError,
    RevisionError,
    UnknownDownRevisionError,
    UnknownRevisionError,
)
from migrator.vector.revisions.ops import Backfill, CreateIndex, Operation
from migrator.vector.revisions.providers import PROVIDERS
from migrator.vector.revisions.recorder import Operations
from migrator.vector.revisions.script import Revision, load_folder

log = logging.getLogger(__name__)
UPGRADE = "upgrade"
# What a revision's operations are recorded against to find its heavy ones, with no dataset.
_NO_DATASET = "heavy-check"
_NO_DATASET_DIMENSION = 384


@dataclass(frozen=True)
class RevisionChain:
    """Revisions from base to head; ``folder`` is where new revision files go."""

    revisions: tuple[Revision, ...]
    folder: Path

    @property
    def head(self) -> str | None:
        return self.revisions[-1].revision if self.revisions else None

    def ids(self) -> list[str]:
        return [r.revision for r in self.revisions]

    def get(self, revision: str, where: str = "requested") -> Revision:
        for candidate in self.revisions:
            if candidate.revision == revision:
                return candidate
        raise UnknownRevisionError(revision, where)

    def position(self, revision: str | None, where: str = "requested") -> int:
        """0 for base (None), n for the n-th revision."""
        return 0 if revision is None else self.revisions.index(self.get(revision, where)) + 1

    def upgrade_path(self, current: str | None, target: str | None = None) -> list[Revision]:
        """Revisions to apply, in order, from ``current`` up to ``target`` (default head)."""
        start = self.position(current, "recorded by the dataset")
        end = len(self.revisions) if target is None else self.position(target, "upgrade target")
        if end < start:
            raise RevisionError(
                f"cannot upgrade from {current!r} to {target!r}: the target is below it"
            )
        return list(self.revisions[start:end])

    def downgrade_path(self, current: str | None, target: str | None) -> list[Revision]:
        """Revisions to undo, newest first, from ``current`` down to ``target`` (None = base);
        refuses before anything runs when one of them has no ``downgrade``."""
        start = self.position(current, "recorded by the dataset")
        end = self.position(target, "downgrade target")
        if end > start:
            raise RevisionError(
                f"cannot downgrade from {current!r} to {target!r}: the target is above it"
            )
        path = list(reversed(self.revisions[end:start]))
        for revision in path:
            if revision.downgrade is None:
                raise MissingDowngradeError(revision.revision, revision.path)
        return path

    def heavy_budget_s(
        self, path: Iterable[Revision], provider: str | None = None, direction: str = UPGRADE
    ) -> float | None:
        """Seconds a dataset going along ``path`` may take when a revision on it is heavy (the
        largest declared budget); None when every one is light. ``provider``: the dataset's
        (None: any). Refuses a heavy revision without a budget (``HeavyBudgetError``)."""
        budgets = [revision_budget_s(r, provider, direction) for r in path]
        return max((b for b in budgets if b is not None), default=None)

    def heavy_revisions(self, provider: str | None = None) -> dict[str, float]:
        """Every heavy revision of the chain and its budget (upgrade direction)."""
        found = {r.revision: revision_budget_s(r, provider, UPGRADE) for r in self.revisions}
        return {revision: budget for revision, budget in found.items() if budget is not None}

    def max_heavy_budget_s(self) -> float | None:
        """The largest budget any revision declares: what the worker's limits must fit."""
        return max(self.heavy_revisions().values(), default=None)

    def current_of(self, applied: Iterable[str]) -> str | None:
        """The current revision of a dataset that records ``applied``; refuses an id this chain
        does not know (newer code migrated it) and a record with gaps."""
        recorded = set(applied)
        for revision in recorded:
            self.get(revision, "recorded by the dataset")
        depth = len(recorded)
        expected = set(self.ids()[:depth])
        if recorded != expected:
            raise RevisionError(
                f"dataset records revisions {sorted(recorded)} which are not the first "
                f"{depth} of the chain {self.ids()[:depth]}"
            )
        return self.revisions[depth - 1].revision if depth else None


def build_chain(
    revisions: Sequence[Revision], folder: Path, base: Sequence[Revision] = ()
) -> RevisionChain:
    """Validate ``revisions`` (one folder) into a linear chain, borrowing from ``base``."""
    by_id = _index(revisions)
    borrowed = _borrowed(revisions, by_id, base)
    every = {**_index(borrowed), **by_id}
    ordered = _linear(list(borrowed) + list(revisions), every, folder)
    return RevisionChain(tuple(ordered), folder)


def load_chain(folder: Path | str, base_folder: Path | str | None = None) -> RevisionChain:
    """Load and validate ``folder``; ``base_folder`` (the built-ins) lends down revisions."""
    folder = Path(folder)
    own = load_folder(folder)
    base: list[Revision] = []
    if base_folder is not None and Path(base_folder).resolve() != folder.resolve():
        base = list(build_chain(load_folder(base_folder), Path(base_folder)).revisions)
    return build_chain(own, folder, base)


def _index(revisions: Sequence[Revision]) -> dict[str, Revision]:
    by_id: dict[str, Revision] = {}
    for revision in revisions:
        other = by_id.get(revision.revision)
        if other is not None:
            raise DuplicateRevisionError(revision.path, revision.revision, other.path)
        by_id[revision.revision] = revision
    return by_id


def _borrowed(
    revisions: Sequence[Revision], by_id: dict[str, Revision], base: Sequence[Revision]
) -> list[Revision]:
    """The base revisions up to the deepest one this folder builds on."""
    base_ids = [r.revision for r in base]
    deepest = 0
    for revision in revisions:
        down = revision.down_revision
        if down is None or down in by_id:
            continue
        if down not in base_ids:
            raise UnknownDownRevisionError(revision.path, revision.revision, down)
        deepest = max(deepest, base_ids.index(down) + 1)
    return list(base[:deepest])


def _linear(revisions: list[Revision], by_id: dict[str, Revision], folder: Path) -> list[Revision]:
    children: dict[str | None, list[Revision]] = {}
    for revision in revisions:
        children.setdefault(revision.down_revision, []).append(revision)
    for parent, kids in children.items():
        if len(kids) > 1:
            where = by_id[parent].path if parent else kids[0].path
            raise MultipleHeadsError(where, [(k.revision, k.path) for k in kids])
    ordered: list[Revision] = []
    step = children.get(None, [])
    while step:
        ordered.append(step[0])
        step = children.get(step[0].revision, [])
    if len(ordered) != len(revisions):
        _raise_cycle([r for r in revisions if r not in ordered], by_id, folder)
    return ordered


def _raise_cycle(left: list[Revision], by_id: dict[str, Revision], folder: Path) -> None:
    seen: list[str] = []
    revision: Revision | None = left[0]
    while revision is not None and revision.revision not in seen:
        seen.append(revision.revision)
        revision = by_id.get(revision.down_revision or "")
    loop = seen[seen.index(revision.revision) :] if revision is not None else seen
    start = by_id[loop[0]]
    raise RevisionCycleError(start.path, [*loop, loop[0]])


@lru_cache(maxsize=1024)
def revision_budget_s(revision: Revision, provider: str | None, direction: str) -> float | None:
    """A revision's heavy budget: the largest of its ``heavy_budget_s`` and the ``budget_s`` of
    its heavy operations; None when it is light (or not for ``provider``).

    The operations are recorded on an empty dataset, as ``migrator vector check`` does: an
    operation a revision asks for only when the dataset holds something (``op.collections()``)
    is not seen here, so such a revision declares ``heavy_budget_s`` itself.
    """
    if provider is not None and not revision.supports(provider):
        return None
    heavy = _heavy_operations(revision, provider, direction)
    declared = revision.heavy_budget_s
    budgets = [op.budget_s for op in heavy if op.budget_s is not None]
    if declared is None and not budgets and heavy:
        raise HeavyBudgetError(
            revision.path,
            revision.revision,
            f"{heavy[0].describe()} is heavy but has no budget: give it budget_s=SECONDS "
            "or declare heavy_budget_s = SECONDS in the revision",
        )
    if declared is not None:
        budgets.append(declared)
    return max(budgets, default=None)


class _Unchecked(Operations):
    """Records without the provider's checks: only heaviness is read here, and the checks of
    a LanceDB index import LanceDB (seconds), which the CLI and the planner must not pay for.
    The run records the revision again, checked, against the dataset's own provider."""

    def _record(self, operation: Operation) -> None:
        self.recorded.append(operation)


def _heavy_operations(
    revision: Revision, provider: str | None, direction: str
) -> list[CreateIndex | Backfill]:
    step = revision.upgrade if direction == UPGRADE else revision.downgrade
    if step is None:
        return []
    providers = [provider] if provider else list(revision.providers or PROVIDERS)
    found: list[CreateIndex | Backfill] = []
    for name in providers:
        op = _Unchecked(
            revision=revision.revision,
            provider=name,
            dataset_id=_NO_DATASET,
            dataset_name=_NO_DATASET,
            vector_dimension=_NO_DATASET_DIMENSION,
        )
        try:
            step(op)
        except InvalidBudgetError:
            raise
        except Exception:
            # A bad call or code that needs a dataset's contents: only what it recorded so far
            # is seen here; the run itself refuses a bad call, naming it.
            log.debug("Revision %s: recorded up to an error.", revision.revision, exc_info=True)
        found += [o for o in op.recorded if isinstance(o, CreateIndex | Backfill) and o.heavy]
    return found
