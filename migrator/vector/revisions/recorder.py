"""``op``: what a revision's ``upgrade(op)``/``downgrade(op)`` receives.

It reads the dataset through a snapshot taken just before and *records* what the revision asks
for; nothing changes until an executor runs the recorded list. Every call is validated at once,
against the provider, so a bad call fails naming the revision and the operation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from migrator.vector.revisions.errors import InvalidBudgetError, InvalidOperationError
from migrator.vector.revisions.ops import (
    AddColumn,
    AlterColumn,
    Backfill,
    BackfillFn,
    CreateCollection,
    CreateIndex,
    DropCollection,
    DropColumn,
    DropIndex,
    Execute,
    Field,
    Native,
    NativeFn,
    Operation,
    RenameColumn,
)
from migrator.vector.revisions.providers import check_identifier, provider_problem
from migrator.vector.revisions.resources import memory_problem, rate_problem, workers_problem
from migrator.vector.revisions.snapshot import CollectionInfo, Snapshot, like_pattern
from migrator.vector.revisions.types import ColumnType, check_default, parse_type
from migrator.vector.revisions.types import vector as vector_type


class Operations:
    """The ``op`` object. Reads: ``provider``, ``dataset_id``, ``dataset_name``,
    ``vector_dimension``, ``collections()``, ``columns()``, ``indexes()``. Everything else
    records one operation in ``recorded``."""

    def __init__(
        self,
        *,
        revision: str,
        provider: str,
        dataset_id: str,
        dataset_name: str,
        vector_dimension: int,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.revision = revision
        self.provider = provider
        self.dataset_id = dataset_id
        self.dataset_name = dataset_name
        self.vector_dimension = vector_dimension
        self._snapshot = snapshot or Snapshot()
        self.recorded: list[Operation] = []

    # ---- reads -----------------------------------------------------------------------------

    def collections(self, like: str | None = None) -> list[str]:
        """The application's collections, sorted; ``like`` is a SQL LIKE pattern.

        >>> for name in op.collections(like="chunks%"): op.add_column(name, "lang", "string")
        """
        names = sorted(self._snapshot.collections)
        if like is None:
            return names
        pattern = like_pattern(like)
        return [name for name in names if pattern.fullmatch(name)]

    def columns(self, collection: str) -> dict[str, str]:
        """Column name -> the store's type name, as the dataset has it now (empty if absent)."""
        return dict(self._info(collection).columns)

    def indexes(self, collection: str) -> list[str]:
        """Index names on a collection, as the dataset has them now."""
        return list(self._info(collection).indexes)

    def _info(self, collection: str) -> CollectionInfo:
        return self._snapshot.collections.get(collection, CollectionInfo())

    # ---- collections -----------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        fields: Mapping[str, str | ColumnType] | Iterable[Field],
        *,
        vector: Mapping[str, int] | None = None,
        primary_key: str | None = "id",
        not_null: Iterable[str] = (),
    ) -> None:
        """A new collection (a no-op when it exists). ``vector`` maps column -> dimension.

        >>> op.create_collection("chunks", {"id": "string", "text": "string"},
        ...                      vector={"embedding": 384})
        """
        what = f"create_collection({name!r})"
        self._name(name, "collection", what)
        required = set(not_null) | ({primary_key} if primary_key else set())
        made = self._fields(fields, vector or {}, required, what)
        names = [f.name for f in made]
        if len(set(names)) != len(names):
            self._refuse(what, "a column name appears twice")
        if primary_key is not None and primary_key not in names:
            self._refuse(what, f"primary key {primary_key!r} is not one of its fields")
        self._record(CreateCollection(name, tuple(made), primary_key))

    def drop_collection(self, name: str) -> None:
        """Drop a collection and its data (a no-op when absent). >>> op.drop_collection("old")"""
        self._name(name, "collection", f"drop_collection({name!r})")
        self._record(DropCollection(name))

    # ---- columns ---------------------------------------------------------------------------

    def add_column(
        self,
        collection: str,
        name: str,
        type: str | ColumnType,
        *,
        default: Any = None,
        nullable: bool = True,
    ) -> None:
        """Add a column in place, existing rows get ``default`` (no rewrite of existing data).

        >>> op.add_column("chunks", "is_deleted", "bool", default=False, nullable=False)
        """
        what = f"add_column({collection!r}, {name!r})"
        self._name(collection, "collection", what)
        self._name(name, "column", what)
        column_type = self._type(type, what)
        try:
            check_default(column_type, default)
        except ValueError as exc:
            self._refuse(what, str(exc))
        if not nullable and default is None:
            self._refuse(what, "a NOT NULL column needs a default for the rows already there")
        self._record(AddColumn(collection, name, column_type, default, nullable))

    def drop_column(self, collection: str, name: str) -> None:
        """Drop a column (a no-op when absent). >>> op.drop_column("chunks", "embedding")"""
        what = f"drop_column({collection!r}, {name!r})"
        self._name(collection, "collection", what)
        self._name(name, "column", what)
        self._record(DropColumn(collection, name))

    def rename_column(self, collection: str, name: str, new_name: str) -> None:
        """Rename a column; done already when only ``new_name`` exists.

        >>> op.rename_column("chunks", "embedding_768", "embedding")
        """
        what = f"rename_column({collection!r}, {name!r})"
        for value, kind in ((collection, "collection"), (name, "column"), (new_name, "column")):
            self._name(value, kind, what)
        self._record(RenameColumn(collection, name, new_name))

    def alter_column(
        self,
        collection: str,
        name: str,
        *,
        type: str | ColumnType | None = None,
        nullable: bool | None = None,
    ) -> None:
        """Change a column's type (castable values) and/or nullability.

        >>> op.alter_column("chunks", "score", type="float64")
        """
        what = f"alter_column({collection!r}, {name!r})"
        self._name(collection, "collection", what)
        self._name(name, "column", what)
        if type is None and nullable is None:
            self._refuse(what, "give type= and/or nullable=")
        new_type = None if type is None else self._type(type, what)
        self._record(AlterColumn(collection, name, new_type, nullable))

    # ---- indexes ---------------------------------------------------------------------------

    def create_index(
        self,
        collection: str,
        columns: str | Iterable[str],
        *,
        kind: str = "btree",
        name: str | None = None,
        concurrently: bool = False,
        heavy: bool = False,
        budget_s: float | None = None,
        maintenance_work_mem: str | None = None,
        parallel_workers: int | None = None,
        **params: Any,
    ) -> None:
        """An index (a no-op when one of that name exists). Kinds: btree everywhere; hnsw,
        ivfflat on pgvector; bitmap, label_list, ivf_flat, ivf_pq, ivf_hnsw_sq, ivf_hnsw_pq on
        LanceDB. ``metric`` is l2, cosine or ip; other params are the store's own.
        ``heavy=True, budget_s=S``: the build may take S seconds, longer than
        DATASET_TIMEOUT_S; its dataset gets that budget and a heavy slot of its server.

        pgvector only: ``maintenance_work_mem`` (``"256MB"``) and ``parallel_workers``
        (max_parallel_maintenance_workers, 0 = none) for this build; unset, the settings
        INDEX_MAINTENANCE_WORK_MEM and INDEX_PARALLEL_WORKERS apply, else the server's own.

        >>> op.create_index("chunks", "embedding", kind="hnsw", metric="cosine", m=16)
        >>> op.create_index("chunks", "embedding", kind="hnsw", heavy=True, budget_s=3600)
        >>> op.create_index("chunks", "embedding", kind="hnsw", metric="cosine", m=16,
        ...                 concurrently=True, maintenance_work_mem="1GB")
        """
        cols = (columns,) if isinstance(columns, str) else tuple(columns)
        what = f"create_index({collection!r}, {list(cols)!r})"
        self._name(collection, "collection", what)
        if not cols:
            self._refuse(what, "name at least one column")
        for column in cols:
            self._name(column, "column", what)
        index_name = name or f"{collection}_{'_'.join(cols)}_{kind}"[:63]
        self._name(index_name, "index", what)
        heavy, budget_s = self._heavy(heavy, budget_s, what)
        if maintenance_work_mem is not None and (problem := memory_problem(maintenance_work_mem)):
            self._refuse(what, problem)
        if parallel_workers is not None and (problem := workers_problem(parallel_workers)):
            self._refuse(what, problem)
        self._record(
            CreateIndex(
                collection,
                cols,
                kind,
                index_name,
                params,
                concurrently,
                heavy=heavy,
                budget_s=budget_s,
                maintenance_work_mem=maintenance_work_mem,
                parallel_workers=parallel_workers,
            )
        )

    def drop_index(self, collection: str, name: str, *, concurrently: bool = False) -> None:
        """Drop an index by name (a no-op when absent). >>> op.drop_index("chunks", "ix")"""
        what = f"drop_index({collection!r}, {name!r})"
        self._name(collection, "collection", what)
        self._name(name, "index", what)
        self._record(DropIndex(collection, name, concurrently))

    # ---- data ------------------------------------------------------------------------------

    def backfill(
        self,
        collection: str,
        column: str,
        fn: BackfillFn,
        *,
        columns: Iterable[str],
        batch_size: int | None = None,
        where: str | None = None,
        heavy: bool = False,
        budget_s: float | None = None,
        rate_limit_rows_s: float | None = None,
    ) -> None:
        """Fill ``column`` with ``fn(batch)``: ``batch`` is a ``pyarrow.RecordBatch`` holding only
        ``columns``, the result one value per row. Batch by batch, checkpointed in the dataset
        database: a killed backfill resumes after its last committed batch.
        ``heavy=True, budget_s=S`` as for ``create_index`` (an embedding service's backfill).

        ``batch_size`` rows per call (unset: BACKFILL_BATCH_ROWS, 1000); ``rate_limit_rows_s``
        at most that many rows a second, sleeping between batches (0: unlimited; unset:
        BACKFILL_RATE_LIMIT_ROWS_S), to spare an embedding service or the dataset's server.

        >>> op.backfill("chunks", "embedding_768", embed, columns=["text"], batch_size=500,
        ...             rate_limit_rows_s=2000)
        """
        what = f"backfill({collection!r}, {column!r})"
        self._name(collection, "collection", what)
        self._name(column, "column", what)
        sources = tuple(columns)
        if not sources:
            self._refuse(what, "name the source columns fn reads (columns=[...])")
        for source in sources:
            self._name(source, "column", what)
        if not callable(fn):
            self._refuse(what, "fn must be callable: fn(batch) -> values")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            self._refuse(what, f"batch_size must be a positive integer, got {batch_size!r}")
        heavy, budget_s = self._heavy(heavy, budget_s, what)
        if rate_limit_rows_s is not None and (problem := rate_problem(rate_limit_rows_s)):
            self._refuse(what, problem)
        self._record(
            Backfill(
                collection,
                column,
                fn,
                sources,
                batch_size,
                where,
                heavy=heavy,
                budget_s=budget_s,
                rate_limit_rows_s=rate_limit_rows_s,
            )
        )

    # ---- the embedding-change recipe (expand, then contract in a later revision) ------------

    def expand_vector(
        self,
        collection: str,
        new_column: str,
        dimension: int,
        embed: BackfillFn,
        *,
        columns: Iterable[str],
        batch_size: int | None = None,
        index_kind: str | None = None,
        **index_params: Any,
    ) -> None:
        """Expand: a second vector column, backfilled by ``embed``, optionally indexed. Readers
        keep using the old column until a later revision calls ``contract_vector``.

        >>> op.expand_vector("chunks", "embedding_768", 768, embed, columns=["text"],
        ...                  index_kind="hnsw", metric="cosine")
        """
        self.add_column(collection, new_column, vector_type(dimension))
        self.backfill(collection, new_column, embed, columns=columns, batch_size=batch_size)
        if index_kind is not None:
            self.create_index(collection, new_column, kind=index_kind, **index_params)

    def contract_vector(self, collection: str, old_column: str, new_column: str) -> None:
        """Contract: drop the old vector column and give the new one its name.

        >>> op.contract_vector("chunks", "embedding", "embedding_768")
        """
        self.drop_column(collection, old_column)
        self.rename_column(collection, new_column, old_column)

    def execute(self, sql: str, *args: Any) -> None:
        """pgvector only: run SQL inside the revision's transaction (declare providers).

        >>> op.execute("UPDATE chunks SET lang = $1 WHERE lang IS NULL", "en")
        """
        if not isinstance(sql, str) or not sql.strip():
            self._refuse("execute()", "give the SQL text")
        self._record(Execute(sql, args))

    def native(self, fn: NativeFn, label: str | None = None) -> None:
        """LanceDB only: ``fn(db)`` (sync or async) with the dataset's ``AsyncConnection``.

        >>> op.native(lambda db: db.create_table("t", schema=my_schema, exist_ok=True))
        """
        if not callable(fn):
            self._refuse("native()", "fn must be callable: fn(db)")
        self._record(Native(fn, label or str(getattr(fn, "__name__", "fn"))))

    # ---- helpers ---------------------------------------------------------------------------

    def _record(self, operation: Operation) -> None:
        problem = provider_problem(operation, self.provider)
        if problem:
            self._refuse(operation.describe(), f"{problem} (provider {self.provider})")
        self.recorded.append(operation)

    def _heavy(self, heavy: bool, budget_s: float | None, what: str) -> tuple[bool, float | None]:
        """``budget_s`` alone also makes the operation heavy; a heavy one without it takes the
        revision's ``heavy_budget_s`` (the chain refuses a heavy revision with neither)."""
        if not isinstance(heavy, bool):
            raise InvalidBudgetError(
                self.revision, what, f"heavy must be True or False, got {heavy!r}"
            )
        if budget_s is None:
            return heavy, None
        number = not isinstance(budget_s, bool) and isinstance(budget_s, int | float)
        if not number or not 0 < budget_s < math.inf:
            reason = f"budget_s must be a positive number of seconds, got {budget_s!r}"
            raise InvalidBudgetError(self.revision, what, reason)
        return True, float(budget_s)

    def _refuse(self, what: str, reason: str) -> None:
        raise InvalidOperationError(self.revision, what, reason)

    def _name(self, value: str, kind: str, what: str) -> None:
        problem = check_identifier(value, kind)
        if problem:
            self._refuse(what, problem)

    def _type(self, value: str | ColumnType, what: str) -> ColumnType:
        try:
            return parse_type(value)
        except ValueError as exc:
            self._refuse(what, str(exc))
            raise  # unreachable: _refuse raises; keeps the type checker sure of a return

    def _fields(
        self,
        fields: Mapping[str, str | ColumnType] | Iterable[Field],
        vectors: Mapping[str, int],
        not_null: set[str],
        what: str,
    ) -> list[Field]:
        if isinstance(fields, Mapping):
            pairs = [(name, self._type(t, what)) for name, t in fields.items()]
            made = [Field(name, t, name not in not_null) for name, t in pairs]
        else:
            made = list(fields)
        for name, dimension in vectors.items():
            try:
                made.append(Field(name, vector_type(dimension), name not in not_null))
            except ValueError as exc:
                self._refuse(what, f"vector {name!r}: {exc}")
        for made_field in made:
            self._name(made_field.name, "column", what)
        return made
