"""The packaged vector revision chain, as tests name it: never a hard-coded head."""

from __future__ import annotations

from migrator.vector.revisions import load_chain

PACKAGED: list[str] = load_chain().ids()
HEAD: str = PACKAGED[-1]
