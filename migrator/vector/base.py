"""The adapter interface. ``run_migrations`` is optional: an adapter without it is skipped."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from migrator.errors import HeadMismatchError
from migrator.settings import Settings
from migrator.vector.chain_config import configured_chain
from migrator.vector.revisions import AppliedRevisions, DatasetContext, RevisionChain
from migrator.vector.revisions.errors import RevisionApplyError
from migrator.vector.revisions.resources import HeavyOptions, OnProgress

log = logging.getLogger(__name__)

T = TypeVar("T")
UPGRADE = "upgrade"
DOWNGRADE = "downgrade"


@dataclass(frozen=True)
class DatasetTarget:
    """One dataset database as the control plane describes it: no secrets in here."""

    dataset_id: str
    name: str
    provider: str
    url: str
    connection_info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MigrationSteps:
    """What ``run_migrations`` did: revisions before and after (None: none), and those it ran.
    A third-party adapter may still report integer versions; they are recorded as text."""

    version_before: str | int | None
    version_after: str | int | None
    applied: tuple[str, ...] = ()


@dataclass(frozen=True)
class RevisionGoal:
    """Where a run takes a dataset: ``target`` (None: the head; for a downgrade, base), the
    direction, and the head the run was planned against (a worker whose chain has another
    head refuses the dataset rather than migrate it to its own)."""

    target: str | None = None
    direction: str = UPGRADE
    expected_head: str | None = None

    @property
    def is_plain_upgrade(self) -> bool:
        """Up to the head the run planned for: what an adapter without targets can do."""
        return self.direction == UPGRADE and self.target in (None, self.expected_head)


@runtime_checkable
class VectorAdapter(Protocol):
    """What the runner needs of an adapter. ``run_migrations`` may be absent."""

    async def read_version(self) -> str | int | None: ...

    async def close(self) -> None: ...


class StepFailed(Exception):
    """Raised by an adapter when a step fails; names the step (a revision id, or ``connect``,
    ``lock``, ``read_version``) for the run record.

    ``version_before`` and ``version_after`` are what the dataset recorded before the run and
    after its last committed revision, when known: earlier revisions stay applied.
    """

    def __init__(
        self,
        step: str,
        cause: BaseException,
        *,
        version_before: str | int | None = None,
        version_after: str | int | None = None,
    ) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.step = step
        self.cause = cause
        self.version_before = version_before
        self.version_after = version_after


class RevisionAdapter(ABC):
    """Base for adapters that run the configured revision chain (VECTOR_MIGRATIONS) through a
    provider's executor, under the adapter's per-dataset lock so two processes never migrate
    one dataset at once. Every failure leaves as ``StepFailed`` naming where it happened."""

    def __init__(self, target: DatasetTarget, settings: Settings) -> None:
        self.target = target
        self.settings = settings
        # Told how a long operation is doing while ``run_migrations`` runs (None: nobody).
        self.on_progress: OnProgress | None = None

    @property
    def heavy(self) -> HeavyOptions:
        """How the executors run heavy operations: settings' resources, this run's listener."""
        return HeavyOptions(self.settings.resources(), self.on_progress)

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        """Validate a dataset URL; return it normalised and the key of the server it is on."""
        return url, ""

    @property
    def context(self) -> DatasetContext:
        return DatasetContext(
            self.target.dataset_id, self.target.name, self.settings.vector_dimension
        )

    async def connect(self) -> None:
        """Open the dataset database. Separate from the revisions so a failure reads as one."""
        return None

    @abstractmethod
    def dataset_lock(self) -> Any:
        """An async context manager held while migrating, across processes."""

    @abstractmethod
    async def current(self, chain: RevisionChain) -> str | None:
        """The revision the dataset records (None: none)."""

    @abstractmethod
    async def apply(
        self, chain: RevisionChain, goal: RevisionGoal, on_revision: Any
    ) -> AppliedRevisions:
        """Upgrade or downgrade to ``goal.target`` through the provider's executor."""

    @abstractmethod
    async def stamp(self, chain: RevisionChain, revision: str | None) -> None:
        """Record the dataset at ``revision`` without running anything."""

    async def read_version(self) -> str | None:
        await self.connect()
        return await self.current(configured_chain(self.settings))

    async def run_migrations(
        self, goal: RevisionGoal | None = None, *, on_progress: OnProgress | None = None
    ) -> MigrationSteps:
        """Bring the dataset to ``goal``; ``on_progress`` hears how index builds and
        backfills are doing while they run."""
        goal = goal or RevisionGoal()
        self.on_progress = on_progress
        chain = await _as_step("chain", _loaded(self.settings))
        if goal.expected_head is not None and goal.expected_head != chain.head:
            raise StepFailed(
                "chain", HeadMismatchError(goal.expected_head, chain.head, chain.folder)
            )
        await _as_step("connect", self.connect())
        async with AsyncExitStack() as stack:
            await _as_step("lock", stack.enter_async_context(self.dataset_lock()))
            # Read under the lock: whoever held it before may have done the work already.
            before = await _as_step("read_version", self.current(chain))
            reached: list[str | None] = [before]

            def on_revision(revision: str, direction: str, _duration_ms: float) -> None:
                if direction == UPGRADE:
                    reached[0] = revision
                else:
                    position = chain.position(revision)
                    reached[0] = chain.ids()[position - 2] if position > 1 else None
                log.debug("Dataset %s: %s %s.", self.target.dataset_id, direction, revision)

            try:
                result = await self.apply(chain, goal, on_revision)
            except Exception as exc:
                step = exc.revision if isinstance(exc, RevisionApplyError) else goal.direction
                raise StepFailed(
                    step, exc, version_before=before, version_after=reached[0]
                ) from exc
        return MigrationSteps(result.before, result.after, result.applied)

    async def close(self) -> None:
        return None


async def _loaded(settings: Settings) -> RevisionChain:
    return configured_chain(settings)


async def _as_step(name: str, awaitable: Awaitable[T]) -> T:
    """Await, turning any error into ``StepFailed(name)``; cancellation passes through."""
    try:
        return await awaitable
    except Exception as exc:
        raise StepFailed(name, exc) from exc
