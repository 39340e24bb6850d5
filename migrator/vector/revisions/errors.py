"""Errors of the vector revision machinery. Each names the file or revision it is about.

Kept beside their code (not in ``migrator/errors.py``) so the revision package stands alone;
every class derives from ``MigratorError``, so the CLI's one dispatcher reports them all.
"""

from __future__ import annotations

from pathlib import Path

from migrator.errors import EXIT_USAGE, MigratorError


class RevisionError(MigratorError):
    """Raised when vector revisions cannot be loaded, chained, planned or applied."""


class RevisionFolderError(RevisionError):
    """Raised when a revision folder is not one clean linear chain; names the file at fault."""

    exit_code = EXIT_USAGE

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


class RevisionFolderNotFoundError(RevisionFolderError):
    """Raised when the revision folder does not exist or is not a directory."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, "vector revision folder not found (check VECTOR_MIGRATIONS)")


class RevisionImportError(RevisionFolderError):
    """Raised when a revision file fails to import; carries the original exception."""

    def __init__(self, path: Path | str, cause: BaseException) -> None:
        super().__init__(path, f"cannot import revision file: {type(cause).__name__}: {cause}")
        self.cause = cause


class BadRevisionAttributeError(RevisionFolderError):
    """Raised when a revision file lacks ``revision``/``down_revision`` or gives a bad value."""


class MissingUpgradeError(RevisionFolderError):
    """Raised when a revision file has no callable ``upgrade(op)``."""

    def __init__(self, path: Path | str, revision: str) -> None:
        super().__init__(path, f"revision {revision!r} defines no upgrade(op) function")
        self.revision = revision


class DuplicateRevisionError(RevisionFolderError):
    """Raised when two files declare the same revision id; names both."""

    def __init__(self, path: Path | str, revision: str, other: Path | str) -> None:
        super().__init__(path, f"revision id {revision!r} is also declared by {other}")
        self.revision = revision
        self.other = Path(other)


class UnknownDownRevisionError(RevisionFolderError):
    """Raised when a ``down_revision`` names a revision that no loaded folder contains."""

    def __init__(self, path: Path | str, revision: str, down_revision: str) -> None:
        super().__init__(
            path,
            f"revision {revision!r} has down_revision {down_revision!r}, which is neither in "
            "this folder nor among the built-in revisions",
        )
        self.revision = revision
        self.down_revision = down_revision


class MultipleHeadsError(RevisionFolderError):
    """Raised when the chain forks: two revisions share a down revision, or two bases exist."""

    def __init__(self, path: Path | str, heads: list[tuple[str, Path]]) -> None:
        named = ", ".join(f"{rev!r} ({file})" for rev, file in heads)
        super().__init__(path, f"history is not linear, it has several heads: {named}")
        self.heads = heads


class RevisionCycleError(RevisionFolderError):
    """Raised when down revisions loop back on themselves; names every revision in the loop."""

    def __init__(self, path: Path | str, cycle: list[str]) -> None:
        super().__init__(path, "down revisions form a cycle: " + " -> ".join(cycle))
        self.cycle = cycle


class UnknownRevisionError(RevisionError):
    """Raised when a revision id (a dataset's recorded one, or a --to target) is not in the
    chain; a dataset at such a revision was migrated by newer code deployed elsewhere."""

    def __init__(self, revision: str, where: str) -> None:
        super().__init__(f"revision {revision!r} ({where}) is not in the configured chain")
        self.revision = revision
        self.where = where


class MissingDowngradeError(RevisionError):
    """Raised when a downgrade passes a revision that defines no ``downgrade(op)``."""

    def __init__(self, revision: str, path: Path) -> None:
        super().__init__(f"{path}: revision {revision!r} has no downgrade(op); cannot go below it")
        self.revision = revision
        self.path = path


class InvalidOperationError(RevisionError):
    """Raised when a revision asks for an operation that is malformed or that its provider
    cannot do; names the revision, the operation and why."""

    def __init__(self, revision: str, operation: str, reason: str) -> None:
        super().__init__(f"revision {revision!r}: {operation}: {reason}")
        self.revision = revision
        self.operation = operation
        self.reason = reason


class InvalidBudgetError(InvalidOperationError):
    """Raised when a heavy operation's ``budget_s`` (or ``heavy``) is not what it must be."""


class RevisionApplyError(RevisionError):
    """Raised when executing one recorded operation fails; earlier revisions stay applied."""

    def __init__(self, revision: str, operation: str, cause: BaseException) -> None:
        super().__init__(
            f"revision {revision!r} failed at {operation}: {type(cause).__name__}: {cause}"
        )
        self.revision = revision
        self.operation = operation
        self.cause = cause


class RevisionCodeError(RevisionFolderError):
    """Raised when a revision's own ``upgrade(op)``/``downgrade(op)`` code raises while its
    operations are recorded; carries the original exception."""

    def __init__(
        self, path: Path | str, revision: str, direction: str, cause: BaseException
    ) -> None:
        super().__init__(
            path, f"{direction}(op) of revision {revision!r} raised {type(cause).__name__}: {cause}"
        )
        self.revision = revision
        self.cause = cause


class HeavyBudgetError(RevisionFolderError):
    """Raised when a revision's heavy budget (``heavy_budget_s``, or ``budget_s`` of a heavy
    operation) is not a positive number of seconds, or a heavy operation has none at all."""

    def __init__(self, path: Path | str, revision: str, reason: str) -> None:
        super().__init__(path, f"revision {revision}: {reason}")
        self.revision = revision


class IndexBuildInProgressError(RevisionError):
    """Raised when an index the revision builds is half-built by another backend that is still
    building it (``pg_stat_progress_create_index``) after the wait; it is left alone, never
    dropped under a live build. Names the schema, the index, the server pid and its phase."""

    def __init__(self, schema: str, index: str, pid: int, phase: str, waited_s: float) -> None:
        super().__init__(
            f"index {schema}.{index} is still being built by server process {pid} "
            f"(phase {phase!r}) after waiting {waited_s:.1f}s; it was left alone: the next run "
            f"finishes or rebuilds it (or end that build: SELECT pg_cancel_backend({pid}))"
        )
        self.schema = schema
        self.index = index
        self.pid = pid
        self.phase = phase
        self.waited_s = waited_s
