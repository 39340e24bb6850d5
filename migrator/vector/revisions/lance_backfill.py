"""A LanceDB backfill that writes only the target column's files, one fragment per commit.

For each fragment, ``merge_columns`` streams the source columns in ``batch_size`` batches
through the application's function into a new data file holding just the computed column; a
``DataReplacement`` commit then swaps that file in for the column's old one. The vector
column's data files are never read or written, and no row is rewritten. The checkpoint unit is
the fragment: a killed backfill redoes at most the fragment it was in. A rate limit sleeps in
the batch function (it runs in a worker thread), so the rows it computes stay within the limit.

The target must be a column that lives in its own files: one made by ``op.add_column`` (or by
a previous backfill), not one written with the rows by ``create_collection``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lance
import pyarrow as pa
from lance import LanceOperation
from lance.fragment import LanceFragment
from lance.udf import BatchUDF

from migrator.vector.revisions.ops import Backfill
from migrator.vector.revisions.resources import DEFAULT_BATCH_ROWS, RateLimiter

ROW_ADDRESS = "_rowaddr"
SCRATCH_COLUMN = "migrator_backfill_value"


def fragment_ids(table_uri: str, storage_options: dict[str, str] | None = None) -> list[int]:
    return list(fragment_rows(table_uri, storage_options))


def fragment_rows(table_uri: str, storage_options: dict[str, str] | None = None) -> dict[int, int]:
    """Fragment id -> its rows, from the manifest (nothing is scanned)."""
    dataset = lance.dataset(table_uri, storage_options=storage_options or None)
    return {f.fragment_id: f.count_rows() for f in dataset.get_fragments()}


def backfill_fragment(
    table_uri: str,
    fragment_id: int,
    backfill: Backfill,
    storage_options: dict[str, str] | None = None,
    batch_rows: int | None = None,
    limiter: RateLimiter | None = None,
) -> None:
    """Compute the column for one fragment and commit it; safe to repeat. ``batch_rows``
    (default: the op's ``batch_size``) rows per call of the function; ``limiter`` paces it."""
    dataset = lance.dataset(table_uri, storage_options=storage_options or None)
    target = dataset.schema.field(backfill.column)
    field_id = _field_id(dataset, backfill.column)
    if _shares_a_file(dataset, fragment_id, field_id):
        raise ValueError(
            f"column {backfill.column!r} is stored with other columns; on LanceDB a backfill "
            "fills a column made by op.add_column"
        )
    fragment = dataset.get_fragment(fragment_id)
    assert fragment is not None, f"fragment {fragment_id} was listed a moment ago"
    matching = _matching_rows(dataset, fragment_id, backfill.where)
    compute = _paced(_batch_function(backfill, target.type, matching), limiter)
    # Only the source columns; with ``where`` also the target (rows it skips keep their value)
    # and the row address that says which rows it selected.
    extra = [] if matching is None else [backfill.column, ROW_ADDRESS]
    read = [*dict.fromkeys([*backfill.columns, *extra])]
    # The output schema given up front: otherwise Lance probes the function with one row first,
    # and an embedding call is not free. No checkpoint_file: checkpoints live in the dataset.
    output = pa.schema([pa.field(SCRATCH_COLUMN, target.type)])
    udf = BatchUDF(compute, output)
    rows = batch_rows or backfill.batch_size or DEFAULT_BATCH_ROWS
    metadata, _ = fragment.merge_columns(udf, columns=read, batch_size=rows)
    new_file = metadata.files[-1]
    new_file.fields = [field_id]
    replacement = LanceOperation.DataReplacementGroup(fragment_id, new_file)
    lance.LanceDataset.commit(
        table_uri,
        LanceOperation.DataReplacement([replacement]),
        read_version=dataset.version,
        storage_options=storage_options or None,
    )


def _field_id(dataset: Any, name: str) -> int:
    for field in dataset.lance_schema.fields():
        if field.name() == name:
            return int(field.id())
    raise KeyError(name)


def _shares_a_file(dataset: Any, fragment_id: int, field_id: int) -> bool:
    fragment: LanceFragment = dataset.get_fragment(fragment_id)
    files: list[Any] = fragment.data_files()
    return any(field_id in f.fields and len(f.fields) > 1 for f in files)


def _matching_rows(dataset: Any, fragment_id: int, where: str | None) -> set[int] | None:
    """Row addresses ``where`` selects in one fragment (8 bytes a row), None for all rows."""
    if where is None:
        return None
    scanner = dataset.scanner(
        filter=where,
        columns=[],
        with_row_address=True,
        fragments=[dataset.get_fragment(fragment_id)],
    )
    return {int(a) for a in scanner.to_table().column(ROW_ADDRESS).to_pylist()}


def _paced(
    compute: Callable[[pa.RecordBatch], pa.RecordBatch], limiter: RateLimiter | None
) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    if limiter is None or limiter.rows_per_s <= 0:
        return compute

    def paced(batch: pa.RecordBatch) -> pa.RecordBatch:
        result = compute(batch)
        limiter.wait_blocking(batch.num_rows)
        return result

    return paced


def _batch_function(
    backfill: Backfill, target_type: pa.DataType, matching: set[int] | None
) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    def compute(batch: pa.RecordBatch) -> pa.RecordBatch:
        sources = batch.select(list(backfill.columns))
        if matching is None:
            values = _as_array(backfill.fn(sources), target_type, batch.num_rows)
            return pa.RecordBatch.from_arrays([values], names=[SCRATCH_COLUMN])
        addresses = batch.column(ROW_ADDRESS).to_pylist()
        chosen = [i for i, address in enumerate(addresses) if address in matching]
        merged = batch.column(backfill.column).to_pylist()
        if chosen:
            picked = sources.take(pa.array(chosen, pa.int64()))
            computed = _as_array(backfill.fn(picked), target_type, len(chosen)).to_pylist()
            for i, value in zip(chosen, computed, strict=True):
                merged[i] = value
        return pa.RecordBatch.from_arrays(
            [pa.array(merged, type=target_type)], names=[SCRATCH_COLUMN]
        )

    return compute


def _as_array(values: Any, target_type: pa.DataType, rows: int) -> pa.Array[Any]:
    array = values if isinstance(values, pa.Array) else pa.array(list(values), type=target_type)
    if array.type != target_type:
        array = array.cast(target_type)
    if len(array) != rows:
        raise ValueError(f"backfill function returned {len(array)} values for {rows} rows")
    return array
