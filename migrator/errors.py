"""Every error this project raises on purpose. Each carries the context needed to act on it.

``FileNotFoundError`` (alembic.ini or the migrations folder missing) is the built-in one, as the
upstream contract says; everything else derives from ``MigratorError``.
"""

from __future__ import annotations

from datetime import datetime

from migrator.states import RunStatus

# Exit codes of the CLI; the dispatcher reads ``exit_code`` off the error.
EXIT_OK = 0
EXIT_RELATIONAL_FAILED = 1
EXIT_PARTIAL = 2
EXIT_BUSY = 3
EXIT_WAIT_TIMEOUT = 4
EXIT_HALTED = 5
EXIT_USAGE = 64

# The one table of what each exit code means (`--help` prints it; the README keeps a copy).
EXIT_CODES = {
    EXIT_OK: "everything is at head",
    EXIT_RELATIONAL_FAILED: "the relational step failed (no dataset was touched), or the "
    "command itself failed",
    EXIT_PARTIAL: "some datasets failed or timed out; every other dataset was migrated",
    EXIT_BUSY: "busy: another run is in progress and --no-attach was given",
    EXIT_WAIT_TIMEOUT: "timed out waiting for a run (enqueue --wait --timeout S; the run goes on)",
    EXIT_HALTED: "halted: a canary, a wave or the failure budget stopped the run; the "
    "datasets it did not touch are recorded deferred (a re-run or --retry-failed takes them)",
    EXIT_USAGE: "bad usage",
}
# How a finished run's status reads as an exit code (a failed run is EXIT_RELATIONAL_FAILED).
EXIT_BY_RUN_STATUS: dict[str, int] = {
    RunStatus.SUCCEEDED: EXIT_OK,
    RunStatus.PARTIAL: EXIT_PARTIAL,
    RunStatus.HALTED: EXIT_HALTED,
}


def exit_code_for(run_status: str) -> int:
    """The exit code of a command that reports a run with ``run_status``."""
    return EXIT_BY_RUN_STATUS.get(run_status, EXIT_RELATIONAL_FAILED)


def exit_codes_help(heading: str = "exit codes:") -> str:
    """``EXIT_CODES`` as the epilog of ``--help``."""
    return heading + "\n" + "".join(f"  {code:<4}{text}\n" for code, text in EXIT_CODES.items())


class MigratorError(Exception):
    """Raised when the migrator cannot do what was asked; base of every project error."""

    exit_code = EXIT_RELATIONAL_FAILED


class UsageError(MigratorError):
    """Raised when a command's arguments or an input value are invalid."""

    exit_code = EXIT_USAGE


class MigrationError(MigratorError):
    """Raised when Alembic fails; ``output`` holds Alembic's own output (passwords removed),
    ``history`` says whose history failed: the migrator's or the application's."""

    def __init__(
        self,
        message: str,
        *,
        output: str = "",
        returncode: int | None = None,
        history: str | None = None,
    ) -> None:
        super().__init__(message)
        self.output = output
        self.returncode = returncode
        self.history = history


class LockTimeoutError(MigratorError):
    """Raised when another process held a migration lock (relational or one dataset's) too long."""

    def __init__(self, lock_name: str, waited_s: float) -> None:
        self.lock_name = lock_name
        self.waited_s = waited_s
        super().__init__(f"gave up waiting {waited_s:.0f}s for migration lock {lock_name!r}")


class ControlPlaneNotReadyError(MigratorError):
    """Raised when the control-plane tables are missing (the relational step never ran)."""


class UnknownProviderError(MigratorError):
    """Raised when no vector adapter is registered under a provider name."""

    exit_code = EXIT_USAGE

    def __init__(self, provider: str, known: list[str]) -> None:
        super().__init__(
            f"unknown vector provider {provider!r}; registered: {', '.join(sorted(known)) or '-'}"
        )
        self.provider = provider
        self.known = known


class BadDatasetURLError(MigratorError):
    """Raised when a dataset database URL cannot be used by its adapter."""

    exit_code = EXIT_USAGE


class ObjectStoreSettingsError(MigratorError):
    """Raised when the object-store settings cannot be used for a remote LanceDB dataset: a
    plain-HTTP endpoint without VECTOR_STORE_ALLOW_HTTP, an endpoint carrying credentials, or
    half a key pair."""


class RemoteLockUnavailableError(MigratorError):
    """Raised when a remote LanceDB dataset would be migrated with no lock that works across
    machines: a SQLite control plane, off the Celery path, without SINGLE_MACHINE."""

    def __init__(self, dataset_id: str) -> None:
        super().__init__(
            f"dataset {dataset_id}: a remote LanceDB dataset needs a lock that works across "
            "machines; with a SQLite control plane only Celery workers (the Redis lock) migrate "
            "it, unless SINGLE_MACHINE=true declares that every migrating process runs on this "
            "machine (or use a PostgreSQL control plane: its advisory lock)"
        )
        self.dataset_id = dataset_id


class DatasetSourceError(MigratorError):
    """Raised when DATASET_SOURCE cannot be read as a whole: the setting is malformed, the
    query or function failed, or the query's columns are not the ones expected (``missing``
    and ``unknown`` name them). No dataset is touched; a bad row fails only that row."""

    def __init__(
        self, message: str, *, missing: list[str] | None = None, unknown: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unknown = unknown or []


class HostNotAllowedError(BadDatasetURLError):
    """Raised when a dataset URL names a server outside VECTOR_DB_ALLOWED_HOSTS: the migrator
    would send it its credentials, so it does not connect at all."""

    def __init__(self, dataset: str, host: str) -> None:
        super().__init__(
            f"dataset {dataset}: host {host!r} is not in VECTOR_DB_ALLOWED_HOSTS; credentials "
            "are sent only to listed servers (add the host or its network to that setting)"
        )
        self.dataset = dataset
        self.host = host


class InsecureAuthenticationError(MigratorError):
    """Raised when a dataset server asks for the password in a form that reveals it (cleartext
    or MD5), or when its TLS settings are weaker than VECTOR_DB_SSLMODE allows; nothing is
    sent."""


class VectorExtensionUnavailableError(MigratorError):
    """Raised when a PostgreSQL server cannot provide the ``vector`` extension."""


class VectorDatabaseUnreachableError(MigratorError):
    """Raised when a dataset's vector database server cannot be reached or refuses the login."""


class QueryTimeoutError(MigratorError):
    """Raised when a database (control plane or dataset server) did not answer one statement
    within QUERY_TIMEOUT_S; the message names the server."""


class ControlPlaneTimeoutError(QueryTimeoutError, TimeoutError):
    """Raised when the control plane did not answer a statement within QUERY_TIMEOUT_S, or a
    new connection within CONNECT_TIMEOUT_S; the message names it (host and port, never a
    password). Also a ``TimeoutError``, so code that treats an unreachable control plane as an
    ``OSError`` (the deploy hook's enqueue, the run-lock check) keeps doing so."""


class RelationalTimeoutError(MigrationError, ControlPlaneTimeoutError):
    """Raised when the control plane stopped answering the Alembic child process: a
    ``MigrationError`` (it carries Alembic's output) that is also a ``ControlPlaneTimeoutError``,
    so nobody asks that silent server to unlock or to record the failed run."""


class DatasetNotFoundError(MigratorError):
    """Raised when a dataset id or name is not in the control plane."""

    exit_code = EXIT_USAGE


class DatasetRemovedError(DatasetNotFoundError):
    """Raised by the write guard when DATASET_SOURCE no longer returns the dataset: its state is
    kept, but no run migrates it any more."""

    def __init__(self, dataset_id: str, removed_at: datetime) -> None:
        self.dataset_id = dataset_id
        self.removed_at = removed_at
        super().__init__(
            f"dataset {dataset_id} was removed from the dataset source at "
            f"{removed_at.isoformat(timespec='seconds')}; runs no longer migrate it"
        )


class DatasetBehindError(MigratorError):
    """Raised by the write guard when a dataset's vector schema is below the revision required."""

    def __init__(
        self, dataset_id: str, revision: str | None, required: str | None, last_error: str | None
    ) -> None:
        self.dataset_id = dataset_id
        self.revision = revision
        self.required = required
        self.last_error = last_error
        cause = f"; its last migration failed: {last_error}" if last_error else ""
        super().__init__(
            f"dataset {dataset_id} is at vector revision {revision or '(base)'}; "
            f"{required or '(base)'} or later is required{cause}"
        )


class RunNotFoundError(MigratorError):
    """Raised when a migration run id is not in the control plane."""

    exit_code = EXIT_USAGE


class RunBusyError(MigratorError):
    """Raised when another run holds the run lock and the caller chose not to attach."""

    exit_code = EXIT_BUSY

    def __init__(self, run_id: str | None) -> None:
        super().__init__(f"another migration run is in progress: {run_id or 'unknown id'}")
        self.run_id = run_id


class WorkerConfigError(MigratorError):
    """Raised when the Celery worker's settings contradict each other (time limits, Redis URL)."""


class SigningConfigError(WorkerConfigError):
    """Raised when the CELERY_SIGNING_* settings are incomplete or name a key, certificate or
    certificate folder that is missing, unreadable, mismatched or untrusted; names the setting
    and the path, never the key's content."""


class DatasetBusyError(MigratorError):
    """Raised when another run still holds a dataset's lock after waiting one lock TTL."""

    def __init__(self, dataset_id: str, holder_run_id: str, waited_s: float) -> None:
        super().__init__(
            f"dataset {dataset_id} is being migrated by run {holder_run_id} "
            f"(waited {waited_s:.0f}s for its lock)"
        )
        self.dataset_id = dataset_id
        self.holder_run_id = holder_run_id


class AttemptsExhaustedError(MigratorError):
    """Raised when a dataset's earlier deliveries in a run all started and never finished (the
    worker process running them was killed), so it is recorded failed instead of tried again."""

    def __init__(self, dataset_id: str, attempts: int) -> None:
        self.dataset_id = dataset_id
        self.attempts = attempts
        super().__init__(
            f"dataset {dataset_id}: {attempts} earlier attempt(s) started and never finished "
            "(worker process killed or lost); not trying again in this run"
        )


class NoOutcomeError(MigratorError):
    """Raised (recorded) when a dataset's subtask ended without recording an outcome: the chord
    body fills the row in so the run can finish."""

    def __init__(self, dataset_id: str, reason: str) -> None:
        super().__init__(f"dataset {dataset_id}: no outcome was recorded ({reason})")
        self.dataset_id = dataset_id


class StaleRunError(MigratorError):
    """Raised (recorded) when a running run made no progress for RUN_STALE_AFTER_S."""

    def __init__(self, run_id: str, idle_s: float) -> None:
        self.run_id = run_id
        self.idle_s = idle_s
        retry = "`migrator enqueue --retry-failed RUN_ID`"
        super().__init__(
            f"run {run_id} made no progress for {idle_s:.0f}s; its workers were lost "
            f"(retry what never finished with {retry})"
        )


class MessageRefusedError(MigratorError):
    """Raised when a task message carries anything but the ids and flags its task takes (a
    forged message, or one from an incompatible release); nothing is done for it. The message
    names fields, never their values (a forged one may carry a password)."""


class RunStillReportingError(MigratorError):
    """Raised when the chord's errback would finish a run whose subtasks may still report (a
    dataset lock held by the run); the errback retries."""

    def __init__(self, run_id: str, live: int, idle_s: float) -> None:
        super().__init__(
            f"run {run_id}: {live} subtask(s) still hold their dataset lock, last progress "
            f"{idle_s:.0f}s ago; not finishing it yet"
        )
        self.run_id = run_id


class WaitTimeoutError(MigratorError):
    """Raised when a caller's wait for a run ends before the run does."""

    exit_code = EXIT_WAIT_TIMEOUT

    def __init__(self, run_id: str, timeout_s: float) -> None:
        super().__init__(f"run {run_id} still running after waiting {timeout_s:.0f}s")
        self.run_id = run_id
        self.timeout_s = timeout_s


class HeadMismatchError(MigratorError):
    """This process's vector revision folder has another head than the run's (a mixed
    deployment during a rollout); the dataset is left untouched."""

    def __init__(self, expected: str | None, mine: str | None, folder: object) -> None:
        super().__init__(
            f"the run targets vector head {expected!r} but this worker's VECTOR_MIGRATIONS "
            f"({folder}) has head {mine!r}; deploy the same revision folder everywhere, then "
            "retry (dataset left untouched)"
        )


class UnsupportedGoalError(MigratorError):
    """A run asked for --to or a downgrade of an adapter that only brings itself to head."""

    def __init__(self, provider: str) -> None:
        super().__init__(
            f"vector adapter {provider!r} has run_migrations() without revision targets; "
            "--to and downgrade need an adapter built on migrator.vector.base.RevisionAdapter"
        )
