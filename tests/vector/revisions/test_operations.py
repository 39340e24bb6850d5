"""``op`` records and validates: every bad call fails at once naming the revision, the
operation and why, per provider; the portable types map to Arrow and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from migrator.vector.revisions import Operations, check_chain, load_chain, parse_type, vector
from migrator.vector.revisions.errors import InvalidOperationError, RevisionCodeError
from migrator.vector.revisions.ops import AddColumn, Backfill, CreateCollection, CreateIndex
from migrator.vector.revisions.snapshot import CollectionInfo, Snapshot
from migrator.vector.revisions.types import to_arrow, to_postgres
from tests.vector.revisions.support import revision_file, write_folder
from tests.vector.revisions.user_folder import IDS, make_folder


def make_op(provider: str = "pgvector", snapshot: Snapshot | None = None) -> Operations:
    return Operations(
        revision="0042_test",
        provider=provider,
        dataset_id="d1",
        dataset_name="one",
        vector_dimension=384,
        snapshot=snapshot,
    )


def test_calls_are_recorded_not_executed() -> None:
    op = make_op()
    op.create_collection("docs", {"id": "string"}, vector={"embedding": 4})
    op.add_column("docs", "lang", "string", default="en")
    op.create_index("docs", "embedding", kind="hnsw", metric="cosine", m=16)
    op.backfill("docs", "lang", lambda b: ["en"] * b.num_rows, columns=["id"], batch_size=10)
    kinds = [type(r) for r in op.recorded]
    assert kinds == [CreateCollection, AddColumn, CreateIndex, Backfill]
    created = op.recorded[0]
    assert isinstance(created, CreateCollection)
    assert [(f.name, str(f.type), f.nullable) for f in created.fields] == [
        ("id", "string", False),
        ("embedding", "vector(4)", True),
    ]
    index = op.recorded[2]
    assert isinstance(index, CreateIndex) and index.name == "docs_embedding_hnsw"


def test_reads_come_from_the_snapshot() -> None:
    snapshot = Snapshot(
        {
            "chunks_a": CollectionInfo({"id": "text"}, ("chunks_a_pkey",)),
            "chunks_b": CollectionInfo({"id": "text", "v": "vector(3)"}),
            "other": CollectionInfo(),
        }
    )
    op = make_op(snapshot=snapshot)
    assert op.collections() == ["chunks_a", "chunks_b", "other"]
    assert op.collections(like="chunks%") == ["chunks_a", "chunks_b"]
    assert op.collections(like="chunks_a") == ["chunks_a"]
    assert op.columns("chunks_b") == {"id": "text", "v": "vector(3)"}
    assert op.indexes("chunks_a") == ["chunks_a_pkey"] and op.columns("absent") == {}
    assert (op.provider, op.dataset_id, op.dataset_name) == ("pgvector", "d1", "one")


BAD_CALLS: list[tuple[str, Callable[[Operations], Any], str]] = [
    ("lancedb", lambda op: op.execute("SELECT 1"), "op.execute is pgvector only"),
    ("pgvector", lambda op: op.native(print), "op.native is lancedb only"),
    ("pgvector", lambda op: op.add_column("t", "c", "varchar"), "unknown column type 'varchar'"),
    ("pgvector", lambda op: op.add_column("t", "c", "vector(0)"), "dimension"),
    ("pgvector", lambda op: op.add_column("t", "Bad-Name", "string"), "lowercase letters"),
    ("pgvector", lambda op: op.create_collection("migrator_x", {"id": "string"}), "own"),
    ("pgvector", lambda op: op.create_collection("t", {"a": "string"}), "primary key 'id'"),
    ("pgvector", lambda op: op.add_column("t", "c", "bool", nullable=False), "needs a default"),
    ("pgvector", lambda op: op.add_column("t", "c", "int64", default="x"), "does not fit"),
    ("pgvector", lambda op: op.alter_column("t", "c"), "give type= and/or nullable="),
    ("pgvector", lambda op: op.create_index("t", "v", kind="ivf_pq"), "pgvector index kinds"),
    ("lancedb", lambda op: op.create_index("t", "v", kind="hnsw"), "LanceDB index kinds"),
    ("lancedb", lambda op: op.create_index("t", ["a", "b"]), "exactly one column"),
    ("lancedb", lambda op: op.create_index("t", "a", concurrently=True), "pgvector option"),
    ("pgvector", lambda op: op.create_index("t", "v", kind="hnsw", lists=3), "unknown index"),
    ("pgvector", lambda op: op.create_index("t", "v", kind="hnsw", metric="x"), "metric"),
    ("lancedb", lambda op: op.create_index("t", "v", kind="ivf_pq", bogus=1), "unknown index"),
    ("lancedb", lambda op: op.alter_column("t", "v", type="vector(8)"), "add a new column"),
    ("pgvector", lambda op: op.backfill("t", "c", len, columns=[]), "source columns"),
    ("pgvector", lambda op: op.backfill("t", "c", len, columns=["a"], batch_size=0), "positive"),
    ("pgvector", lambda op: op.backfill("t", "c", "nope", columns=["a"]), "callable"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("provider", "call", "why"), BAD_CALLS)
def test_a_bad_call_is_refused_naming_revision_and_reason(
    provider: str, call: Callable[[Operations], Any], why: str
) -> None:
    op = make_op(provider)
    with pytest.raises(InvalidOperationError) as caught:
        call(op)
    assert "revision '0042_test'" in str(caught.value)
    assert why in str(caught.value)
    assert op.recorded == []


def test_portable_types_map_to_arrow_and_postgres() -> None:
    expected = {
        "string": (pa.string(), "text"),
        "int32": (pa.int32(), "integer"),
        "int64": (pa.int64(), "bigint"),
        "float32": (pa.float32(), "real"),
        "float64": (pa.float64(), "double precision"),
        "bool": (pa.bool_(), "boolean"),
        "timestamp": (pa.timestamp("us", tz="UTC"), "timestamptz"),
        "json": (pa.string(), "jsonb"),
        "list<string>": (pa.list_(pa.string()), "text[]"),
        "vector(768)": (pa.list_(pa.float32(), 768), '"public".vector(768)'),
    }
    for spelled, (arrow, postgres) in expected.items():
        column_type = parse_type(spelled)
        assert str(column_type) == spelled
        assert to_arrow(column_type) == arrow
        assert to_postgres(column_type, '"public"') == postgres
    assert parse_type("string[]") == parse_type("list<string>") and vector(3) == parse_type(
        "Vector(3)"
    )


def test_check_validates_every_revision_for_every_provider_offline(tmp_path: Path) -> None:
    checked = check_chain(load_chain(make_folder(tmp_path / "user")))
    assert {(c.provider, c.revision) for c in checked} == {
        (p, r) for p in ("lancedb", "pgvector") for r in IDS
    }
    by_key = {(c.provider, c.revision): c for c in checked}
    assert by_key["pgvector", "0002_columns"].upgrade_ops == 8
    assert by_key["lancedb", "0006_native"].downgrade_ops == 1
    assert all(c.upgrade_ops > 0 for c in check_chain(load_chain()))


def test_check_refuses_a_provider_specific_op_without_providers(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "v", {"a.py": revision_file("a", None, 'op.execute("SELECT 1")')}
    )
    chain = load_chain(folder)
    assert [c.provider for c in check_chain(chain, ["pgvector"])] == ["pgvector"]
    with pytest.raises(InvalidOperationError, match=r"revision 'a': execute.*pgvector only"):
        check_chain(chain)


def test_revision_code_that_raises_is_reported_with_its_file(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "v", {"a.py": revision_file("a", None, 'op.columns("t")["missing"]')}
    )
    with pytest.raises(RevisionCodeError) as caught:
        check_chain(load_chain(folder))
    assert str(caught.value).startswith(f"{folder / 'a.py'}: upgrade(op) of revision 'a' raised")
    assert "KeyError" in str(caught.value)
