"""Reading a folder of revision files: each imported once, its attributes checked.

A revision file is plain Python::

    \"\"\"Add a language column.\"\"\"      # the message
    revision = "0004_add_lang"
    down_revision = "0003_create_index"   # None for the first revision
    providers = ("pgvector",)             # optional: only when it uses a provider's own op
    heavy_budget_s = 1800                 # optional: heavy, may take this long (seconds)

    def upgrade(op): ...
    def downgrade(op): ...                # optional
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from migrator.vector.revisions.errors import (
    BadRevisionAttributeError,
    HeavyBudgetError,
    MissingUpgradeError,
    RevisionFolderNotFoundError,
    RevisionImportError,
)
from migrator.vector.revisions.providers import PROVIDERS

Step = Callable[[Any], None]


@dataclass(frozen=True)
class Revision:
    """One revision file, loaded."""

    revision: str
    down_revision: str | None
    path: Path
    message: str
    upgrade: Step
    downgrade: Step | None = None
    providers: tuple[str, ...] | None = None
    # Declared heavy (its datasets get this many seconds instead of DATASET_TIMEOUT_S).
    heavy_budget_s: float | None = None

    def supports(self, provider: str) -> bool:
        return self.providers is None or provider in self.providers


def revision_files(folder: Path) -> list[Path]:
    """The ``*.py`` files of a folder that are revisions (``_``-prefixed files are not)."""
    if not folder.is_dir():
        raise RevisionFolderNotFoundError(folder)
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def load_folder(folder: Path | str) -> list[Revision]:
    """Import every revision file of ``folder``; the first bad file raises, naming itself."""
    return [load_file(path) for path in revision_files(Path(folder))]


def load_file(path: Path) -> Revision:
    module = _import(path)
    revision = getattr(module, "revision", None)
    if not isinstance(revision, str) or not revision.strip():
        raise BadRevisionAttributeError(path, 'needs `revision = "<id>"`, a non-empty string')
    if not hasattr(module, "down_revision"):
        raise BadRevisionAttributeError(
            path, 'needs `down_revision = "<id>"` (or None for the first revision)'
        )
    down = module.down_revision
    if down is not None and (not isinstance(down, str) or not down.strip()):
        raise BadRevisionAttributeError(
            path, f"down_revision must be one revision id or None (history is linear), got {down!r}"
        )
    upgrade = getattr(module, "upgrade", None)
    if not callable(upgrade):
        raise MissingUpgradeError(path, revision)
    downgrade = getattr(module, "downgrade", None)
    if downgrade is not None and not callable(downgrade):
        raise BadRevisionAttributeError(path, "downgrade must be a function downgrade(op)")
    return Revision(
        revision=revision,
        down_revision=down,
        path=path,
        message=(module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "",
        upgrade=upgrade,
        downgrade=downgrade,
        providers=_providers(path, module),
        heavy_budget_s=_heavy_budget_s(path, revision, module),
    )


def _heavy_budget_s(path: Path, revision: str, module: ModuleType) -> float | None:
    value = getattr(module, "heavy_budget_s", None)
    if value is None:
        return None
    return checked_budget_s(value, path, revision, "heavy_budget_s")


def checked_budget_s(value: object, path: Path, revision: str, what: str) -> float:
    """``value`` as seconds; ``HeavyBudgetError`` naming the revision unless it is a positive,
    finite number (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise HeavyBudgetError(
            path, revision, f"{what} must be a positive number of seconds, got {value!r}"
        )
    return float(value)


def _providers(path: Path, module: ModuleType) -> tuple[str, ...] | None:
    providers = getattr(module, "providers", None)
    if providers is None:
        return None
    if isinstance(providers, str) or not all(isinstance(p, str) for p in providers):
        raise BadRevisionAttributeError(
            path, f"providers must be a tuple of names such as {PROVIDERS!r}, got {providers!r}"
        )
    return tuple(providers)


def _import(path: Path) -> ModuleType:
    # A unique module name per file: two folders may both hold "0004_x.py".
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"migrator_vector_revision_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RevisionImportError(path, ImportError("not a loadable Python file"))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise RevisionImportError(path, exc) from exc
    return module
