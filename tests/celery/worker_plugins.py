"""Loaded by the test workers (``--include tests.celery.worker_plugins``): registers the
scripted and the broken adapters in the worker process."""

from __future__ import annotations

from migrator.vector.registry import register_adapter
from tests.celery.fake_adapters import PROVIDER, ScriptedAdapter
from tests.support.broken_adapter import PROVIDER as BROKEN
from tests.support.broken_adapter import BrokenAdapter

register_adapter(PROVIDER, ScriptedAdapter)
register_adapter(BROKEN, BrokenAdapter)
