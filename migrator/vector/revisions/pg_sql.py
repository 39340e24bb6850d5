"""The SQL each recorded operation becomes on pgvector. Every statement is idempotent
(IF [NOT] EXISTS), so a phase re-run after a crash changes nothing that is already there."""

from __future__ import annotations

from migrator.vector.revisions.ops import (
    AddColumn,
    AlterColumn,
    Backfill,
    CreateCollection,
    CreateIndex,
    DropCollection,
    DropColumn,
    DropIndex,
    Execute,
    Native,
    Operation,
    RenameColumn,
)
from migrator.vector.revisions.providers import PG_METRIC_OPS, PG_VECTOR_KINDS
from migrator.vector.revisions.types import postgres_literal, to_postgres


def quote_ident(name: str) -> str:
    """Quote an identifier already validated as lowercase; quoting is belt and braces."""
    return '"' + name.replace('"', '""') + '"'


class PgSql:
    """Renders operations for one dataset schema; ``vector_schema`` is where ``vector`` lives."""

    def __init__(self, schema: str, vector_schema: str) -> None:
        self.schema = schema
        self.vector_schema = quote_ident(vector_schema)

    def table(self, name: str) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(name)}"

    def statements(self, op: Operation) -> list[str]:
        """The SQL of one operation; a rename and a backfill also need the executor's care."""
        if isinstance(op, CreateCollection):
            return [self._create(op)]
        if isinstance(op, DropCollection):
            return [f"DROP TABLE IF EXISTS {self.table(op.name)}"]
        if isinstance(op, AddColumn):
            return [self._add(op)]
        if isinstance(op, DropColumn):
            column = quote_ident(op.name)
            return [f"ALTER TABLE {self.table(op.collection)} DROP COLUMN IF EXISTS {column}"]
        if isinstance(op, RenameColumn):
            return [
                f"ALTER TABLE {self.table(op.collection)} RENAME COLUMN "
                f"{quote_ident(op.name)} TO {quote_ident(op.new_name)}"
            ]
        if isinstance(op, AlterColumn):
            return self._alter(op)
        if isinstance(op, CreateIndex):
            return [self._index(op)]
        if isinstance(op, DropIndex):
            how = " CONCURRENTLY" if op.concurrently else ""
            return [f"DROP INDEX{how} IF EXISTS {self.table(op.name)}"]
        if isinstance(op, Execute):
            return [op.sql]
        if isinstance(op, Backfill):
            return [
                f"-- backfill {op.collection}.{op.column} from {', '.join(op.columns)} "
                f"in batches of {op.batch_size or 'BACKFILL_BATCH_ROWS'} "
                "(Python function, checkpointed)"
            ]
        assert isinstance(op, Native)
        raise ValueError("op.native is LanceDB only")

    def _create(self, op: CreateCollection) -> str:
        columns = [
            f"{quote_ident(f.name)} {to_postgres(f.type, self.vector_schema)}"
            + ("" if f.nullable or f.name == op.primary_key else " NOT NULL")
            for f in op.fields
        ]
        if op.primary_key is not None:
            columns.append(f"PRIMARY KEY ({quote_ident(op.primary_key)})")
        return f"CREATE TABLE IF NOT EXISTS {self.table(op.name)} ({', '.join(columns)})"

    def _add(self, op: AddColumn) -> str:
        sql = (
            f"ALTER TABLE {self.table(op.collection)} ADD COLUMN IF NOT EXISTS "
            f"{quote_ident(op.name)} {to_postgres(op.type, self.vector_schema)}"
        )
        if not op.nullable:
            sql += " NOT NULL"
        if op.default is not None:
            # A constant default is kept in the catalog: no table rewrite, rows untouched.
            sql += f" DEFAULT {postgres_literal(op.type, op.default)}"
        return sql

    def _alter(self, op: AlterColumn) -> list[str]:
        prefix = f"ALTER TABLE {self.table(op.collection)} ALTER COLUMN {quote_ident(op.name)}"
        out: list[str] = []
        if op.type is not None:
            pg_type = to_postgres(op.type, self.vector_schema)
            out.append(f"{prefix} TYPE {pg_type} USING {quote_ident(op.name)}::{pg_type}")
        if op.nullable is not None:
            out.append(f"{prefix} {'DROP' if op.nullable else 'SET'} NOT NULL")
        return out

    def _index(self, op: CreateIndex) -> str:
        how = " CONCURRENTLY" if op.concurrently else ""
        params = {k: v for k, v in op.params.items() if k != "metric"}
        if op.kind in PG_VECTOR_KINDS:
            opclass = f"{self.vector_schema}.{PG_METRIC_OPS[op.params.get('metric', 'l2')]}"
            columns = f"{quote_ident(op.columns[0])} {opclass}"
        else:
            columns = ", ".join(quote_ident(c) for c in op.columns)
        sql = (
            f"CREATE INDEX{how} IF NOT EXISTS {quote_ident(op.name)} "
            f"ON {self.table(op.collection)} USING {op.kind} ({columns})"
        )
        if params:
            sql += " WITH (" + ", ".join(f"{k} = {int(v)}" for k, v in params.items()) + ")"
        return sql
