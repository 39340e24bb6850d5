"""Celery's own floor: the job's shape with none of its bookkeeping.

A parent task replaces itself with a chord of N no-op tasks and a body that counts their
results, on the same worker as the job (``celery -A worker worker --include bench.floor``: the
same app, configuration, queue, pool and concurrency). What the job's Celery run costs above
this, at the same N, is the job's own overhead: locks, slots, heartbeats, control-plane rows.

    python -m bench.floor --count 10000     # against a running worker that includes this module

Prints one JSON line: the count, the wall time from sending the parent to the body's result,
and what the body returned. The wall time includes this process's start, as the job's
``migrator enqueue --wait`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from celery import Task, chord

from migrator.constants import QUEUE_NAME
from worker import app

FLOOR_PARENT = "bench.floor_parent"
FLOOR_NOOP = "bench.floor_noop"
FLOOR_BODY = "bench.floor_body"


@app.task(name=FLOOR_NOOP)
def floor_noop(index: int) -> dict[str, Any]:
    # A small dict like the job's outcome, so the chord stores results of a similar size.
    return {"i": index, "status": "succeeded"}


@app.task(name=FLOOR_BODY)
def floor_body(results: list[Any]) -> dict[str, Any]:
    return {"count": len(results)}


@app.task(name=FLOOR_PARENT, bind=True)
def floor_parent(self: Task[Any, Any], /, count: int) -> None:
    """Send the chord from a worker child, as the job's parent task does."""
    header = [floor_noop.si(i).set(queue=QUEUE_NAME) for i in range(count)]
    raise self.replace(chord(header, floor_body.s().set(queue=QUEUE_NAME)))


def run_floor(count: int, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    result = floor_parent.apply_async(args=(count,), queue=QUEUE_NAME)
    body = result.get(timeout=timeout_s, disable_sync_subtasks=False)
    return {"count": count, "wall_s": time.perf_counter() - started, "body": body}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    print(json.dumps(run_floor(args.count, args.timeout_s)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
