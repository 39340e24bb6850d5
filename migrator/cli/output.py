"""How commands print: JSON for machines, short tables for people, a progress bar on a terminal."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from migrator.runs.summary import RunSummary
from migrator.states import DatasetStatus
from migrator.urls import escape_controls
from migrator.vector.revisions.resources import describe_progress

MAX_FAILED_SHOWN = 20
# JSON summaries list every outcome up to this many datasets, only the failed ones beyond.
FULL_LISTING_MAX = 100


def print_json(data: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str), file=stream or sys.stdout)


def print_summary(summary: RunSummary, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    c = summary.counts
    print(
        f"run {summary.run_id}: {summary.status} ({summary.trigger}) in {summary.duration_s:.2f}s",
        file=out,
    )
    print(
        f"  relational: {summary.relational_before or '(empty)'} -> {summary.relational_after}",
        file=out,
    )
    print(
        f"  datasets: total={c.get('total', 0)} succeeded={c.get(DatasetStatus.SUCCEEDED, 0)} "
        f"failed={c.get(DatasetStatus.FAILED, 0)} timed_out={c.get(DatasetStatus.TIMED_OUT, 0)} "
        f"skipped={c.get(DatasetStatus.SKIPPED, 0)} deferred={c.get(DatasetStatus.DEFERRED, 0)}",
        file=out,
    )
    if summary.error:
        print(f"  error: {summary.error}", file=out)
    running = [d for d in summary.datasets if d.status == DatasetStatus.RUNNING and d.progress]
    for outcome in running[:MAX_FAILED_SHOWN]:
        print(f"  running: {outcome.label}: {operation_line(outcome.progress)}", file=out)
    failed = [d for d in summary.datasets if d.finished_badly]
    for outcome in failed[:MAX_FAILED_SHOWN]:
        last = f" (last: {operation_line(outcome.progress)})" if outcome.progress else ""
        print(f"  {outcome.status}: {outcome.label}: {outcome.error}{last}", file=out)
    if len(failed) > MAX_FAILED_SHOWN:
        print(
            f"  ... and {len(failed) - MAX_FAILED_SHOWN} more (migrator status RUN_ID --json)",
            file=out,
        )
    for error in summary.source_errors[:MAX_FAILED_SHOWN]:
        print(
            f"  refused source row {error.get('row')} (id {error.get('dataset_id')}): "
            f"{escape_controls(str(error.get('error')))}",
            file=out,
        )
    if len(summary.source_errors) > MAX_FAILED_SHOWN:
        print(f"  ... and {len(summary.source_errors) - MAX_FAILED_SHOWN} more refused", file=out)
    if c.get("total", 0) == 0 and not summary.error and not summary.source_errors:
        print("  nothing pending: every dataset database is at head", file=out)


def operation_line(progress: dict[str, Any] | None) -> str:
    """A recorded long operation as one line, with when it was sampled; escaped, since object
    names come from revision files."""
    if not progress:
        return ""
    at = progress.get("updated_at")
    return escape_controls(describe_progress(progress) + (f" at {at}" if at else ""))


def print_table(
    rows: list[dict[str, Any]], columns: list[str], stream: TextIO | None = None
) -> None:
    out = stream or sys.stdout
    if not rows:
        print("(none)", file=out)
        return
    # Names and URLs planted by hand may hold terminal escapes: shown escaped, never executed.
    cells = [
        {c: "" if r.get(c) is None else escape_controls(str(r[c])) for c in columns} for r in rows
    ]
    widths = {c: max(len(c), *(len(cell[c]) for cell in cells)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip(), file=out)
    for cell in cells:
        print("  ".join(cell[c].ljust(widths[c]) for c in columns).rstrip(), file=out)


class Progress:
    """A tqdm bar on a terminal; otherwise one line per update, at most one a second."""

    def __init__(
        self,
        description: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_interval_s: float = 1.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.description = description
        self.min_interval_s = min_interval_s
        self._last_line_at = 0.0
        self._last_operation_at: dict[str, float] = {}
        self._bar: Any = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(desc=description, total=0, unit="dataset", file=self.stream)

    def update(self, done: int, total: int, failed: int) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.set_postfix(failed=failed, refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if done == total or now - self._last_line_at >= self.min_interval_s:
            self._last_line_at = now
            print(
                f"{self.description}: {done}/{total} datasets done, {failed} failed",
                file=self.stream,
                flush=True,
            )

    def operation(self, label: str, progress: dict[str, Any]) -> None:
        """A dataset's long operation: ``ds-7: create_index hnsw ix 43% of ... (phase)``. On a
        terminal it is the bar's postfix; otherwise a line at most every ``min_interval_s``
        per dataset."""
        if not self.enabled:
            return
        text = f"{escape_controls(label)}: {escape_controls(describe_progress(progress))}"
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)
            return
        now = time.monotonic()
        if now - self._last_operation_at.get(label, -float("inf")) >= self.min_interval_s:
            self._last_operation_at[label] = now
            print(f"{self.description}: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
