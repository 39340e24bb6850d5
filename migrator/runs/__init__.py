"""The run path: how a run is chosen, carried out and recorded, in-process or over a broker.

Every arrow points down; the in-process and broker paths share the lower modules and never
import each other.

- ``summary``: what a run reports (``RunSummary``, ``DatasetOutcome``), its log lines and task
  results.
- ``store``: every read and write of ``migration_runs`` and ``migration_run_datasets``.
- ``request``: ``RunRequest``, what a trigger asks for, and the check of its task message.
- ``selection``: which datasets a run takes (pending, a subset, a retry).
- ``dataset``: migrate one dataset and record its outcome.
- ``inprocess``: the whole run in this process (``run_startup_migrations``).
- ``trigger``, ``parent``, ``subtask``, ``chord``: the broker steps, one file each.
- ``check``: the scheduled check.
"""
