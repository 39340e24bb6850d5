"""The base of the fake vector adapters (``scripted``, ``probe``, the bench's no-op one).

A fake adapter keeps its state in a directory named by its URL, ``<provider>://<dir>?k=v``: the
query says how it behaves, the file ``version`` is its version record (a revision id). It
implements what the migrator asks of a third-party adapter (``read_version``,
``run_migrations`` without arguments, ``close``, ``normalise_url``) and reaches the head of the
configured chain (VECTOR_MIGRATIONS) in one go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from migrator.vector.base import MigrationSteps
from migrator.vector.chain_config import configured_chain


class FakeAdapter:
    """Subclasses set ``provider`` and ``server_key`` and implement ``run_migrations``."""

    provider: ClassVar[str]
    server_key: ClassVar[str]

    def __init__(self, target: Any, settings: Any) -> None:
        parts = urlsplit(target.url)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.dataset_id: str = target.dataset_id
        self.state_dir = Path(parts.path)
        self.chain = configured_chain(settings)

    @classmethod
    def url(cls, state_dir: Path, **behaviour: float) -> str:
        """The dataset URL of a fake dataset kept in ``state_dir``."""
        query = "&".join(f"{k}={v}" for k, v in behaviour.items())
        return f"{cls.provider}://{state_dir}" + (f"?{query}" if query else "")

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        return url, cls.server_key

    def number(self, key: str) -> float:
        """A behaviour from the URL's query; 0 when absent."""
        return float(self.query.get(key, 0))

    async def read_version(self) -> str | None:
        version_file = self.state_dir / "version"
        return version_file.read_text() or None if version_file.is_file() else None

    async def record_head(self) -> MigrationSteps:
        """Write head as the version record; what a migration from the recorded version did."""
        before = await self.read_version()
        head = self.chain.head
        (self.state_dir / "version").write_text(head or "")
        applied = tuple(r.revision for r in self.chain.upgrade_path(before))
        return MigrationSteps(before, head, applied)

    async def close(self) -> None:
        return None
