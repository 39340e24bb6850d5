"""``migrator vector revision -m MESSAGE``: a new revision file on top of the folder's head."""

from __future__ import annotations

import re
from pathlib import Path

from migrator.vector.revisions.chain import RevisionChain
from migrator.vector.revisions.errors import RevisionFolderError

SLUG_CHARS = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 40

TEMPLATE = '''"""{message}"""

from migrator.vector.revisions import Operations

revision = {revision!r}
down_revision = {down_revision!r}


def upgrade(op: Operations) -> None:
    pass


def downgrade(op: Operations) -> None:
    pass
'''


def slug(message: str) -> str:
    return SLUG_CHARS.sub("_", message.lower()).strip("_")[:SLUG_MAX].rstrip("_") or "revision"


def render_revision(message: str, revision: str, down_revision: str | None) -> str:
    """The text of a new revision file."""
    # Escaped so any message (quotes, a trailing backslash) stays one valid docstring.
    one_line = " ".join(message.split()).replace("\\", "\\\\").replace('"', '\\"')
    return TEMPLATE.format(message=one_line, revision=revision, down_revision=down_revision)


def next_revision_id(chain: RevisionChain, message: str) -> str:
    """``NNNN_slug`` numbered after the chain's length (borrowed built-ins included)."""
    return f"{len(chain.revisions) + 1:04d}_{slug(message)}"


def write_revision(chain: RevisionChain, message: str, revision: str | None = None) -> Path:
    """Write ``<id>.py`` into the chain's folder with ``down_revision`` = its head."""
    if not message.strip():
        raise RevisionFolderError(chain.folder, "a new revision needs a message (-m)")
    revision = revision or next_revision_id(chain, message)
    if revision in chain.ids():
        raise RevisionFolderError(chain.folder, f"revision {revision!r} exists already")
    path = chain.folder / f"{slug(revision)}.py"
    if path.exists():
        raise RevisionFolderError(path, "file exists already; choose another revision id")
    path.write_text(render_revision(message, revision, chain.head), encoding="utf-8")
    return path
