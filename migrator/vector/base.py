"""The adapter interface. ``run_migrations`` is optional: an adapter without it is skipped."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

from migrator.settings import Settings
from migrator.vector.schema import HEAD_VERSION, VectorStep, steps_after

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    """What ``run_migrations`` did: versions before and after, and the steps it applied."""

    version_before: int
    version_after: int
    applied: tuple[str, ...] = ()


class StepFailed(Exception):
    """Raised by an adapter when one step fails; names the step for the run record.

    ``version_before`` and ``version_after`` are what the dataset recorded before the run and
    after its last committed step, when known: earlier steps stay applied.
    """

    def __init__(
        self,
        step: str,
        cause: BaseException,
        *,
        version_before: int | None = None,
        version_after: int | None = None,
    ) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.step = step
        self.cause = cause
        self.version_before = version_before
        self.version_after = version_after


class VersionedAdapter(ABC):
    """Base for adapters that keep a version record and apply ``schema.STEPS`` in order.

    Takes the ``DatasetTarget`` (where the dataset lives, no secrets) and the ``Settings``
    (credentials, timeouts). Subclasses implement ``read_version`` (returns the version the
    dataset records, 0 for none), ``apply_step`` (one step and its version row, atomically where
    the store allows, idempotently always) and ``dataset_lock`` (an async context manager held
    across processes); they may override ``connect``, ``close`` and ``normalise_url``.

    ``run_migrations(target_version)`` returns ``MigrationSteps`` (versions before and after,
    steps applied); it decides which steps to run under the adapter's per-dataset lock, so two
    processes never migrate one dataset at once. Every failure leaves as ``StepFailed`` naming
    where it happened: ``connect``, ``lock``, ``read_version`` or a step's name.
    """

    def __init__(self, target: DatasetTarget, settings: Settings) -> None:
        self.target = target
        self.settings = settings

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        """Validate a dataset URL; return it normalised and the key of the server it is on."""
        return url, ""

    async def connect(self) -> None:
        """Open the dataset database. Separate from the steps so a failure here reads as one."""
        return None

    @abstractmethod
    async def read_version(self) -> int:
        """The version the dataset database records; 0 when it records none."""

    @abstractmethod
    async def apply_step(self, step: VectorStep) -> None:
        """Apply one step and record it, atomically; re-applying an applied step is a no-op."""

    @abstractmethod
    def dataset_lock(self) -> Any:
        """An async context manager held while migrating, across processes."""

    async def run_migrations(self, target_version: int = HEAD_VERSION) -> MigrationSteps:
        """Bring the dataset to ``target_version`` (head by default); returns what was done."""
        await _as_step("connect", self.connect())
        async with AsyncExitStack() as stack:
            await _as_step("lock", stack.enter_async_context(self.dataset_lock()))
            # Read under the lock: whoever held it before may have done the work already.
            before = await _as_step("read_version", self.read_version())
            try:
                pending = _pending_steps(before, target_version)
            except ValueError as exc:  # the database is newer than this migrator
                raise StepFailed("read_version", exc) from exc
            applied: list[str] = []
            reached = before
            for step in pending:
                try:
                    await self.apply_step(step)
                except Exception as exc:
                    raise StepFailed(
                        step.name, exc, version_before=before, version_after=reached
                    ) from exc
                reached = step.version
                applied.append(step.name)
                log.debug("Dataset %s: applied vector step %s.", self.target.dataset_id, step.name)
            after = await _as_step("read_version", self.read_version())
        return MigrationSteps(before, after, tuple(applied))

    async def close(self) -> None:
        return None


def _pending_steps(version: int, target_version: int) -> tuple[VectorStep, ...]:
    return tuple(step for step in steps_after(version) if step.version <= target_version)


async def _as_step(name: str, awaitable: Awaitable[T]) -> T:
    """Await, turning any error into ``StepFailed(name)``; cancellation passes through."""
    try:
        return await awaitable
    except Exception as exc:
        raise StepFailed(name, exc) from exc
