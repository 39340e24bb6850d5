"""What every test package, ``bench/`` and ``scripts/`` share: processes, services (and the
embedded PostgreSQL), the environment they run in, readers of the control-plane rows, and the
base of the fake vector adapters."""
