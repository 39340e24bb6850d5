"""CI keeps the benchmark harness working: every workload and mode at a small N.

Nothing about speed is asserted (figures live in bench/RESULTS.md); only that every mode ran
to the end against the real services and migrated what it should.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.environment import PROJECT_ROOT

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
    for workload in ("real", "orchestration"):
        for mode in ("sequential", "inprocess", "celery"):
            assert (workload, "40", mode) in modes
    for mode in ("verify-loop", "inprocess", "celery", "check", "check-verify"):
        assert ("steady", "40", mode) in modes
    migrated = [row for row in rows if row.split("|")[1].strip() in ("real", "orchestration")]
    assert all("succeeded (40 ok)" in row for row in migrated), migrated
