"""Every lock the migrator takes, each named for what it guards.

- ``relational``: the relational lock around ``alembic upgrade head`` (a PostgreSQL advisory
  lock, or a file lock beside the SQLite file), and the file lock it is built from.
- ``redis``: the Redis locks of broker runs: the run lock (one run at a time), the subtask lock
  (one delivery of a dataset's subtask at a time) and the check lock (one scheduled check).
- ``slots``: per-server slots in Redis, a cap on concurrent migrations against one server.
- ``heartbeat``: the one thread that extends a holder's Redis locks and slot while it works.
- ``outage``: the one way a Redis lock or slot is waited for through a Redis outage.
"""
