"""The one settings object. Every field is an environment variable documented in the README."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from migrator.vector.revisions.resources import Resources

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def to_async_url(url: str) -> str:
    """Normalise a database URL to the async driver this project uses for it."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgresql+psycopg2://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def absolute_sqlite_path(url: str) -> str:
    """Anchor a relative SQLite path at the current directory, so the Alembic child process
    (which runs beside alembic.ini) opens the same file as this process."""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix):
        return url
    path, sep, query = url[len(prefix) :].partition("?")
    if not path or path == ":memory:" or path.startswith("/"):
        return url
    return f"{prefix}{Path(path).expanduser().resolve()}{sep}{query}"


class Settings(BaseSettings):
    """Every setting of the migrator, read once from the environment (or ``.env``).

    Takes each field as keyword argument or from the environment variable of the same name in
    capitals (``DATABASE_URL``, ``DATASET_TIMEOUT_S``...); the README's table lists them all with
    their defaults. Invalid values raise pydantic's ``ValidationError`` naming the field.
    ``database_url`` is normalised to its async driver; secrets are ``SecretStr``, and
    ``secrets()`` returns their values for redaction. ``get_settings()`` returns the cached
    instance of this process.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: SecretStr = Field(
        SecretStr("sqlite+aiosqlite:///./.data/migrator.db"),
        description="Control-plane database; sqlite:// and postgresql:// are normalised to async.",
    )
    alembic_config: Path = Field(
        PROJECT_ROOT / "alembic.ini", description="Path of alembic.ini for the control plane."
    )
    app_alembic_config: Path | None = Field(
        None,
        description="The application's own alembic.ini, upgraded beside the migrator's in the "
        "relational step; empty: none.",
    )
    guard_cache_s: float = Field(
        0.0,
        ge=0,
        description="How long require_current/dataset_status reuse a dataset's status; 0: never.",
    )
    log_level: str = Field("INFO", description="DEBUG shows the full Alembic output of every run.")
    enable_backend_access_control: bool = Field(
        True, description="true: migrate every dataset database; false: only the default engine."
    )

    vector_db_provider: str = Field("lancedb", description="Provider of the default vector engine.")
    vector_db_url: str = Field(
        "./.data/vector",
        description="LanceDB root (a directory per dataset) or default engine URL.",
    )
    vector_dimension: int = Field(384, ge=1, le=16000, description="Vector width of collections.")
    vector_migrations: str = Field(
        "",
        description="Folder of vector revision files; empty: the packaged one.",
    )
    vector_db_username: str = Field("postgres", description="User for pgvector dataset servers.")
    vector_db_password: SecretStr = Field(
        SecretStr(""), description="Password for pgvector dataset servers; never stored in rows."
    )
    vector_db_allowed_hosts: str = Field(
        "127.0.0.0/8,::1,localhost,unix",
        description="Hosts, IPs, CIDR networks and 'unix' (socket directories) that dataset "
        "credentials may be sent to, comma-separated.",
    )
    vector_db_sslmode: Literal["require", "verify-ca", "verify-full"] = Field(
        "verify-full",
        description="Least TLS mode for non-loopback pgvector servers; a URL may only ask more.",
    )
    vector_db_sslrootcert: Path | None = Field(
        None, description="CA file for verify-ca/verify-full; empty: the system trust store."
    )
    vector_store_roots: str = Field(
        "",
        description="Directories and s3://, gs://, az:// prefixes LanceDB datasets may live "
        "under, comma-separated; empty: VECTOR_DB_URL's root.",
    )
    vector_store_s3_endpoint: str = Field(
        "",
        description="Endpoint of an S3-compatible store for s3:// datasets (http://host:port); "
        "empty: AWS_ENDPOINT_URL, else AWS itself.",
    )
    vector_store_s3_region: str = Field(
        "", description="Region of s3:// datasets; empty: AWS_REGION / AWS_DEFAULT_REGION."
    )
    vector_store_s3_access_key_id: str = Field(
        "", description="Access key for s3:// datasets; empty: the standard AWS environment."
    )
    vector_store_s3_secret_access_key: SecretStr = Field(
        SecretStr(""),
        description="Secret key for s3:// datasets; empty: the standard AWS environment.",
    )
    vector_store_allow_http: bool = Field(
        False,
        description="Allow plain-HTTP object-store endpoints (a local S3-compatible server); "
        "off: only HTTPS.",
    )
    single_machine: bool = Field(
        False,
        description="Every process that migrates datasets runs on this one machine: with a "
        "SQLite control plane, remote LanceDB datasets are then locked by a local file.",
    )
    dataset_source: str = Field(
        "registry",
        description="Where datasets come from: 'registry', 'query:<SQL SELECT>' (run read-only "
        "on the control plane) or 'function:<module.path>:<attribute>'.",
    )
    query_timeout_s: float = Field(
        30.0, gt=0, description="Bound on every control-plane query and light dataset statement."
    )

    migration_concurrency: int = Field(8, ge=1, le=256, description="Datasets migrated at once.")
    per_server_concurrency: int = Field(
        8, ge=1, le=256, description="Concurrent migrations against one database server."
    )
    dataset_timeout_s: float = Field(300.0, gt=0, description="Hard limit for one dataset.")
    heavy_per_server_concurrency: int = Field(
        1,
        ge=1,
        le=256,
        description="Heavy datasets (a revision with a heavy budget: index builds, declared "
        "backfills) migrating at once on one database server, within PER_SERVER_CONCURRENCY.",
    )
    heavy_queue: str = Field(
        "migrator.heavy",
        min_length=1,
        description="Celery queue of heavy datasets' subtasks; a worker must consume it.",
    )
    heavy_concurrency: int = Field(
        1,
        ge=1,
        le=256,
        description="Processes of a worker that consumes HEAVY_QUEUE (its --concurrency).",
    )
    relational_lock_timeout_s: float = Field(
        600.0, gt=0, description="How long to wait for another process's relational upgrade."
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Timeout to open a dataset database.")

    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Celery broker, result backend, locks."
    )
    celery_signing_key_file: Path | None = Field(
        None,
        description="PEM RSA private key this process signs Celery task messages with; empty "
        "(the default): messages are not signed. Set with the two below, on every worker, "
        "beat and enqueuing CLI.",
    )
    celery_signing_cert_file: Path | None = Field(
        None, description="The X.509 certificate of CELERY_SIGNING_KEY_FILE (PEM)."
    )
    celery_signing_cert_store: Path | None = Field(
        None,
        description="Folder of the PEM certificates whose signatures workers accept (its own "
        "included); an unsigned or otherwise signed task message is refused.",
    )
    migration_check_interval_s: float = Field(
        300.0, gt=0, description="How often celery beat runs the scheduled check."
    )
    migration_check_verify: bool = Field(
        True, description="The scheduled check also opens every dataset to find drift."
    )
    migration_check_action: Literal["report", "enqueue"] = Field(
        "report", description="What the scheduled check does when it finds work."
    )
    dataset_soft_time_limit_s: float = Field(
        240.0, gt=0, description="Celery soft limit of one dataset subtask (recorded timed_out)."
    )
    dataset_time_limit_s: float = Field(
        300.0, gt=0, description="Celery hard limit of one dataset subtask."
    )
    redis_visibility_timeout_s: float = Field(
        3600.0, gt=0, description="Redis redelivers an unacknowledged task after this long."
    )
    run_stale_after_s: float = Field(
        900.0, gt=0, description="A running run without progress for this long is stale."
    )
    dataset_lock_ttl_s: float = Field(
        30.0,
        gt=0,
        description="Per-dataset Redis lock TTL; a live subtask extends it, a killed one's lapses.",
    )
    dataset_max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Deliveries of one dataset in one run that may start and never finish "
        "(worker killed) before it is recorded failed.",
    )
    result_expires_s: float = Field(
        86400.0,
        gt=0,
        description="How long Redis keeps task results and chord state; longer than any run "
        "plus a caller's wait.",
    )
    max_failures: str = Field(
        "",
        description="Default failure budget of a run: a count or a percentage ('5%'). Empty "
        "(the default): none, every selected dataset is attempted; a fleet of hundreds wants "
        "a few percent.",
    )
    quarantine_after_runs: int = Field(
        3,
        ge=1,
        le=1000,
        description="Runs in a row a dataset's migration must itself fail before quarantine.",
    )

    index_maintenance_work_mem: str = Field(
        "",
        description="maintenance_work_mem of a pgvector index build ('256MB', '1GB'); empty "
        "(the default): the server's own. op.create_index(maintenance_work_mem=) wins.",
    )
    index_parallel_workers: int | None = Field(
        None,
        ge=0,
        le=1024,
        description="max_parallel_maintenance_workers of a pgvector index build (0: none); "
        "unset (the default): the server's own. op.create_index(parallel_workers=) wins.",
    )
    backfill_batch_rows: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Rows per backfill batch (one commit and checkpoint each on pgvector, one "
        "call of the function); op.backfill(batch_size=) wins.",
    )
    backfill_rate_limit_rows_s: float = Field(
        0.0,
        ge=0,
        description="At most this many backfill rows a second, sleeping between batches; 0 "
        "(the default): unlimited. op.backfill(rate_limit_rows_s=) wins.",
    )
    progress_interval_s: float = Field(
        2.0,
        gt=0,
        le=300,
        description="How often a running index build's progress is sampled, and at most how "
        "often a dataset's progress is written to the run record.",
    )

    index_build_wait_s: float = Field(
        60.0,
        ge=0,
        description="How long a pgvector index build waits for another server process still "
        "building the same index (a killed migrator's build) before failing the dataset with "
        "IndexBuildInProgressError; a dead build's leftover is dropped and rebuilt at once.",
    )

    @field_validator("index_maintenance_work_mem")
    @classmethod
    def _maintenance_work_mem(cls, value: str) -> str:
        from migrator.vector.revisions.resources import memory_problem

        problem = memory_problem(value) if value.strip() else None
        if problem:
            raise ValueError(f"INDEX_MAINTENANCE_WORK_MEM: {problem}")
        return value.strip()

    @field_validator("index_parallel_workers", mode="before")
    @classmethod
    def _empty_workers(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("max_failures")
    @classmethod
    def _budget(cls, value: str) -> str:
        from migrator.runs.rollout import parse_share

        if value.strip():
            parse_share(value, "MAX_FAILURES")  # a bad value is refused at start, naming it
        return value

    @field_validator("dataset_source")
    @classmethod
    def _dataset_source(cls, value: str) -> str:
        kind, _, rest = value.strip().partition(":")
        if value.strip() == "registry" or (kind in ("query", "function") and rest.strip()):
            return value.strip()
        raise ValueError(
            "DATASET_SOURCE must be 'registry', 'query:<SQL SELECT>' or "
            "'function:<module.path>:<attribute>'"
        )

    @field_validator("database_url", mode="before")
    @classmethod
    def _async_driver(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return absolute_sqlite_path(to_async_url(raw)) if isinstance(raw, str) else value

    @field_validator("vector_db_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: str) -> str:
        from migrator.vector.hosts import parse_allowed_hosts

        parse_allowed_hosts(value)  # a bad entry is refused at start, naming it
        return value

    @field_validator(
        "vector_db_sslrootcert",
        "celery_signing_key_file",
        "celery_signing_cert_file",
        "celery_signing_cert_store",
        mode="before",
    )
    @classmethod
    def _empty_path(cls, value: object) -> object:
        return None if value == "" else value

    def resources(self) -> Resources:
        """The defaults of heavy operations (index builds, backfills) from these settings."""
        from migrator.vector.revisions.resources import Resources

        return Resources(
            maintenance_work_mem=self.index_maintenance_work_mem or None,
            parallel_workers=self.index_parallel_workers,
            backfill_batch_rows=self.backfill_batch_rows,
            backfill_rate_limit_rows_s=self.backfill_rate_limit_rows_s,
            progress_interval_s=self.progress_interval_s,
            live_build_wait_s=self.index_build_wait_s,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.get_secret_value().startswith("sqlite")

    @property
    def external_source(self) -> bool:
        """True when datasets come from the application (a query or a function)."""
        return self.dataset_source != "registry"

    def secrets(self) -> list[str]:
        """Every secret value this process knows, for log and output redaction."""
        from migrator.urls import password_of
        from migrator.vector.object_store import environment_secrets

        found = [
            self.vector_db_password.get_secret_value(),
            self.vector_store_s3_secret_access_key.get_secret_value(),
            self.vector_store_s3_access_key_id,
            *environment_secrets(),
        ]
        found += [password_of(u.get_secret_value()) for u in (self.database_url, self.redis_url)]
        return [s for s in found if s]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once; tests call ``get_settings.cache_clear()`` after changing it."""
    return Settings()
