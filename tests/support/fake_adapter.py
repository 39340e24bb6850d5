"""The base of the fake vector adapters (``scripted``, ``probe``, the bench's no-op one).

A fake adapter keeps its state in a directory named by its URL, ``<provider>://<dir>?k=v``: the
query says how it behaves, the file ``version`` is its version record. It implements what the
migrator asks of an adapter (``read_version``, ``run_migrations``, ``close``, ``normalise_url``)
and reaches head in one go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from migrator.vector.base import MigrationSteps
from migrator.vector.schema import HEAD_VERSION, steps_after


class FakeAdapter:
    """Subclasses set ``provider`` and ``server_key`` and implement ``run_migrations``."""

    provider: ClassVar[str]
    server_key: ClassVar[str]

    def __init__(self, target: Any, settings: Any) -> None:
        parts = urlsplit(target.url)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.dataset_id: str = target.dataset_id
        self.state_dir = Path(parts.path)

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

    async def read_version(self) -> int:
        version_file = self.state_dir / "version"
        return int(version_file.read_text()) if version_file.is_file() else 0

    async def record_head(self) -> MigrationSteps:
        """Write head as the version record; what a migration from the recorded version did."""
        before = await self.read_version()
        (self.state_dir / "version").write_text(str(HEAD_VERSION))
        return MigrationSteps(before, HEAD_VERSION, tuple(s.name for s in steps_after(before)))

    async def close(self) -> None:
        return None
