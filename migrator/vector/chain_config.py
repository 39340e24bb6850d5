"""The vector revision chain this deployment runs: VECTOR_MIGRATIONS' folder (default: the
packaged one), validated once per process and again whenever one of its files changes."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from migrator.settings import Settings
from migrator.vector.revisions import DEFAULT_FOLDER, RevisionChain, load_chain


def chain_folder(settings: Settings) -> Path:
    return (
        Path(settings.vector_migrations).expanduser()
        if settings.vector_migrations
        else (DEFAULT_FOLDER)
    )


def configured_chain(settings: Settings) -> RevisionChain:
    """The configured chain; a folder that is not one clean chain raises a
    ``RevisionFolderError`` naming the file, before any dataset is touched."""
    folder = chain_folder(settings)
    return _cached(str(folder), _fingerprint(folder))


def configured_head(settings: Settings) -> str | None:
    return configured_chain(settings).head


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    # Name, size and mtime of every file: a revision added or edited reloads the chain.
    if not folder.is_dir():
        return ()
    return tuple(
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.py"))
    )


@lru_cache(maxsize=16)
def _cached(folder: str, _fingerprint: tuple[tuple[str, int, int], ...]) -> RevisionChain:
    return load_chain(folder)


def as_revision(version: object) -> str | None:
    """A version as the control plane records it: a revision id, or None for none. A
    third-party adapter that still reports integers is recorded as their text."""
    if version is None or version == 0:
        return None
    return str(version)
