"""How long ``migrator plan`` takes on a big fleet (control plane only, SQLite).

    python -m bench.plan [--datasets 10000] [--repeat 3]

Registers that many LanceDB datasets straight into a fresh SQLite control plane at head (no
folder is made: a plan opens none), then times ``migrator plan --json --canary 1% --wave-size
1000`` through the CLI's entry point in this process, and the same with ``--detail``. Prints
one JSON line: the best and every wall time, per variant. Nothing about it is asserted in
tests; tests/rollout/test_plan.py checks the plan's content at 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

from migrator.cli import main
from migrator.relational import upgrade_to_head
from migrator.settings import get_settings
from tests.support.environment import on_control_plane
from tests.support.rows import RawDataset, insert_raw

PLAN = ["plan", "--json", "--canary", "1%", "--wave-size", "1000"]


def register(root: Path, count: int) -> None:
    settings = get_settings()
    asyncio.run(upgrade_to_head(settings))
    rows = [
        RawDataset(f"ds-{n:05d}", "lancedb", str(root / f"ds-{n:05d}"), server_key="local")
        for n in range(count)
    ]
    on_control_plane(settings, lambda engine: insert_raw(engine, rows))


def timed(argv: list[str], datasets: int) -> float:
    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    elapsed_s = time.monotonic() - started
    if code != 0 or json.loads(out.getvalue())["datasets"] != datasets:
        raise SystemExit(f"plan failed (exit {code}): {out.getvalue()[-500:]}")
    return elapsed_s


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        root = Path(tmp)
        os.environ.update(
            DATABASE_URL=f"sqlite+aiosqlite:///{root / 'control.db'}",
            VECTOR_DB_URL=str(root / "vector"),
            VECTOR_STORE_ROOTS=str(root),
            LOG_LEVEL="WARNING",
        )
        get_settings.cache_clear()
        register(root / "vector", args.datasets)
        figures = {}
        for name, argv in (("plan", PLAN), ("plan --detail", [*PLAN, "--detail"])):
            runs = [timed(argv, args.datasets) for _ in range(args.repeat)]
            figures[name] = {"best_s": round(min(runs), 2), "runs_s": [round(r, 2) for r in runs]}
    print(json.dumps({"datasets": args.datasets, **figures}))


if __name__ == "__main__":
    main_bench()
