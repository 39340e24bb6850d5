"""The portable column types a revision names, and how each maps to Arrow and PostgreSQL.

A revision writes ``"string"``, ``"int64"``, ``"timestamp"``, ``"vector(768)"``... (or the
``ColumnType`` values below); each store gets its own spelling from here, never from the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

SCALAR_NAMES = (
    "string",
    "int32",
    "int64",
    "float32",
    "float64",
    "bool",
    "timestamp",
    "json",
    "list<string>",
)
VECTOR_PATTERN = re.compile(r"vector\((\d{1,5})\)")
MAX_VECTOR_DIMENSION = 16000  # pgvector's limit for a stored vector

_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    # LanceDB has no JSON type that every reader understands: the text of the document.
    "json": pa.string(),
    "list<string>": pa.list_(pa.string()),
}
_POSTGRES = {
    "string": "text",
    "int32": "integer",
    "int64": "bigint",
    "float32": "real",
    "float64": "double precision",
    "bool": "boolean",
    "timestamp": "timestamptz",
    "json": "jsonb",
    "list<string>": "text[]",
}
# DataFusion SQL casts LanceDB's add_columns evaluates for a constant default.
_LANCE_SQL = {
    "string": "STRING",
    "int32": "INT",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "json": "STRING",
}
_LANCE_TIMESTAMP = 'Timestamp(Microsecond, Some("UTC"))'


@dataclass(frozen=True)
class ColumnType:
    """One portable type: a scalar name, or ``vector`` with its dimension."""

    name: str
    dimension: int | None = None

    def __str__(self) -> str:
        return f"vector({self.dimension})" if self.is_vector else self.name

    @property
    def is_vector(self) -> bool:
        return self.name == "vector"


def vector(dimension: int) -> ColumnType:
    """``vector(N)``: N float32 values; pgvector ``vector(N)``, Arrow fixed-size list."""
    if not isinstance(dimension, int) or not 1 <= dimension <= MAX_VECTOR_DIMENSION:
        raise ValueError(f"vector dimension must be an integer 1..{MAX_VECTOR_DIMENSION}")
    return ColumnType("vector", dimension)


def parse_type(value: str | ColumnType) -> ColumnType:
    """Read a type as a revision writes it; ``ValueError`` names the accepted spellings."""
    if isinstance(value, ColumnType):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a column type is a string such as 'int64', got {value!r}")
    spelled = value.strip().lower().replace(" ", "")
    if spelled in ("list[string]", "string[]"):
        spelled = "list<string>"
    if spelled in SCALAR_NAMES:
        return ColumnType(spelled)
    match = VECTOR_PATTERN.fullmatch(spelled)
    if match:
        return vector(int(match.group(1)))
    raise ValueError(
        f"unknown column type {value!r}; use one of {', '.join(SCALAR_NAMES)} or vector(N)"
    )


def to_arrow(column_type: ColumnType) -> pa.DataType:
    if column_type.is_vector:
        assert column_type.dimension is not None
        return pa.list_(pa.float32(), column_type.dimension)
    return _ARROW[column_type.name]


def to_postgres(column_type: ColumnType, vector_schema: str) -> str:
    """The PostgreSQL type; ``vector_schema`` is the quoted schema pgvector's types live in."""
    if column_type.is_vector:
        return f"{vector_schema}.vector({column_type.dimension})"
    return _POSTGRES[column_type.name]


def check_default(column_type: ColumnType, value: Any) -> None:
    """Refuse a default the type cannot hold (``ValueError`` says which)."""
    if value is None:
        return
    name = column_type.name
    ok = {
        "string": isinstance(value, str),
        "int32": isinstance(value, int) and not isinstance(value, bool),
        "int64": isinstance(value, int) and not isinstance(value, bool),
        "float32": isinstance(value, int | float) and not isinstance(value, bool),
        "float64": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "timestamp": isinstance(value, datetime) and value.tzinfo is not None,
        "json": _is_json(value),
    }.get(name, False)
    if not ok:
        raise ValueError(f"default {value!r} does not fit type {column_type}")


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def postgres_literal(column_type: ColumnType, value: Any) -> str:
    """A constant default as SQL text (DDL takes no parameters); strings are quoted."""
    if value is None:
        return "NULL"
    name = column_type.name
    if name == "bool":
        return "true" if value else "false"
    if name in ("int32", "int64", "float32", "float64"):
        return repr(value)
    if name == "timestamp":
        return f"{_quote(value.isoformat())}::timestamptz"
    if name == "json":
        return f"{_quote(json.dumps(value))}::jsonb"
    return _quote(str(value))


def lance_default_sql(column_type: ColumnType, value: Any) -> str:
    """The SQL expression LanceDB's ``add_columns`` evaluates for a constant default."""
    if column_type.name == "timestamp":
        inner = "NULL" if value is None else _quote(value.isoformat())
        return f"arrow_cast({inner}, '{_LANCE_TIMESTAMP}')"
    if value is None:
        return f"CAST(NULL AS {_LANCE_SQL[column_type.name]})"
    literal = postgres_literal(column_type, value).split("::")[0]
    if column_type.name == "json":
        literal = _quote(json.dumps(value))
    return f"CAST({literal} AS {_LANCE_SQL[column_type.name]})"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
