"""Loaded by the test workers (``--include tests.celery.worker_plugins``): registers the
scripted adapter in the worker process."""

from __future__ import annotations

from migrator.vector.registry import register_adapter
from tests.celery.fake_adapters import PROVIDER, ScriptedAdapter

register_adapter(PROVIDER, ScriptedAdapter)
