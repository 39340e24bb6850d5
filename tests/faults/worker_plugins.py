"""Loaded by the fault scenarios' workers (``--include tests.faults.worker_plugins``): registers
the ``probe`` and ``broken`` adapters, and — when FAULTS_MARKS names a directory — leaves one
file per task a pool process starts (``<task name>.<task id>``, holding its pid), so a scenario
knows which process to kill."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery.signals import task_prerun

from migrator.vector.registry import register_adapter
from tests.faults.probe_adapter import PROVIDER, ProbeAdapter
from tests.support.broken_adapter import PROVIDER as BROKEN
from tests.support.broken_adapter import BrokenAdapter

register_adapter(PROVIDER, ProbeAdapter)
register_adapter(BROKEN, BrokenAdapter)


@task_prerun.connect
def _mark_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    marks = os.environ.get("FAULTS_MARKS")
    if marks and task is not None and task_id:
        Path(marks, f"{task.name}.{task_id}").write_text(str(os.getpid()))
