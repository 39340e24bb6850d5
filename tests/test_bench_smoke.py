"""CI keeps the benchmark harness working: every workload and mode at a small N (the data
workloads at a few datasets of a few hundred rows, Celery's floor beside the orchestration).

Nothing about speed is asserted (figures live in bench/RESULTS.md); only that every mode ran
to the end against the real services and migrated what it should.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.environment import PROJECT_ROOT

# bench.run's SMALL_N, SMALL_DATA_N and SMALL_ROWS (not imported: it loads LanceDB at import).
SMALL_N, SMALL_DATA_N, SMALL_ROWS = 20, 4, 500

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_bench_harness_runs_every_mode_at_small_n() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--small"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=580,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )

    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    modes = {tuple(cell.strip() for cell in row.split("|")[1:4]) for row in rows}
    small, data_n = str(SMALL_N), str(SMALL_DATA_N)
    for workload in ("real", "orchestration"):
        for mode in ("sequential", "inprocess", "celery"):
            assert (workload, small, mode) in modes
    assert ("orchestration", small, "floor") in modes
    for mode in ("verify-loop", "inprocess", "celery", "check", "check-verify"):
        assert ("steady", small, mode) in modes
    for workload in ("data-lancedb", "data-pgvector"):
        for mode in ("sequential", "inprocess", "celery"):
            assert (f"{workload} (R={SMALL_ROWS})", data_n, mode) in modes
    for row in rows:
        if not row.startswith("| steady "):
            count = data_n if row.startswith("| data-") else small
            assert f"succeeded ({count} ok)" in row, row
