"""The Celery app: ``celery -A worker worker`` and ``celery -A worker beat``.

Configuration comes from ``migrator.settings`` (see ``worker.config``; task messages are
signed when the CELERY_SIGNING_* settings are set, see ``worker.signing``); the tasks live in
``tasks``. Process signals give each worker process one event loop and one control-plane
engine (``worker.runtime``) and the project's redacting log format.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from migrator.logging_setup import configure_logging
from migrator.settings import Settings, get_settings
from worker.config import celery_config
from worker.runtime import runtime
from worker.signing import enable_signing, signing_config, signing_files


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("migrator", include=["tasks"])
    app.conf.update(celery_config(settings))
    signing = signing_files(settings)
    if signing is not None:
        app.conf.update(signing_config(signing))
        enable_signing(app, signing)
    return app


app = create_app()


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connecting here stops Celery from installing its own handler: ours removes passwords.
    configure_logging(get_settings())


@worker_init.connect
def _load_adapters(**_: Any) -> None:
    # The built-in adapters (LanceDB and pyarrow take seconds to import) load once in the
    # prefork parent, so no child spends a dataset's time limit on its first import. Here and
    # not at import: `migrator enqueue` imports this module to send a run and needs neither.
    import migrator.vector.lancedb_adapter
    import migrator.vector.pgvector_adapter  # noqa: F401


@worker_process_init.connect
def _start_process(**_: Any) -> None:
    runtime().after_fork()


@worker_process_shutdown.connect
def _stop_process(**_: Any) -> None:
    runtime().shutdown()
