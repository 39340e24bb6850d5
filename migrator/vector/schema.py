"""The vector schema every dataset database is brought to, as ordered, versioned steps.

The steps are logical; each adapter implements every one for its backend. A dataset database
records the steps it has; that record is the truth, and the control plane caches its number.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VectorStep:
    version: int
    name: str
    description: str


STEPS: tuple[VectorStep, ...] = (
    VectorStep(1, "create_collections", "collection with id, payload and a vector column"),
    VectorStep(2, "add_created_at_and_deleted", "created_at (null) and is_deleted (false) columns"),
    VectorStep(3, "create_index", "HNSW on the vector (pgvector); BTree on id (LanceDB)"),
)
HEAD_VERSION = STEPS[-1].version


def steps_after(version: int) -> tuple[VectorStep, ...]:
    """The steps a database at ``version`` still needs, in order."""
    if version > HEAD_VERSION:
        raise ValueError(
            f"dataset database is at vector schema {version}, newer than this migrator's "
            f"head {HEAD_VERSION}; upgrade the migrator"
        )
    return tuple(step for step in STEPS if step.version > version)
