"""The adapter registry: built-ins, in-process registration, and real entry point discovery."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.errors import UnknownProviderError
from migrator.runs.inprocess import run_startup_migrations
from migrator.settings import Settings
from migrator.vector import registry
from migrator.vector.lancedb_adapter import LanceDBAdapter
from migrator.vector.pgvector_adapter import PgVectorAdapter
from tests.vector.helpers import cached, target

PLUGIN_MODULE = "bare_vector_plugin"


def test_builtins_are_found_by_provider_name() -> None:
    assert registry.adapter_factory("lancedb") is LanceDBAdapter
    assert registry.adapter_factory("pgvector") is PgVectorAdapter


def test_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(UnknownProviderError) as caught:
        registry.adapter_factory("nosuch")
    assert str(caught.value) == "unknown vector provider 'nosuch'; registered: lancedb, pgvector"


def test_in_process_registration_wins_and_can_be_undone() -> None:
    registry.register_adapter("lancedb", PgVectorAdapter)
    try:
        assert registry.adapter_factory("lancedb") is PgVectorAdapter
    finally:
        registry.unregister_adapter("lancedb")
    assert registry.adapter_factory("lancedb") is LanceDBAdapter


@pytest.fixture
def bare_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A third-party distribution on sys.path: a module and a real ``*.dist-info`` whose
    entry_points.txt registers provider ``bare`` -- an adapter without ``run_migrations``."""
    root = tmp_path / "site"
    root.mkdir()
    (root / f"{PLUGIN_MODULE}.py").write_text(
        textwrap.dedent(
            """
            class BareAdapter:
                def __init__(self, target, settings):
                    self.target = target

                async def read_version(self):
                    return 0

                async def close(self):
                    return None
            """
        )
    )
    dist_info = root / "bare_vector_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bare-vector-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[dataset_migrator.vector_adapters]\nbare = {PLUGIN_MODULE}:BareAdapter\n"
    )
    monkeypatch.syspath_prepend(str(root))
    yield "bare"
    sys.modules.pop(PLUGIN_MODULE, None)


def test_an_entry_point_adapter_is_discovered(bare_plugin: str) -> None:
    assert bare_plugin in registry.provider_names()
    factory = registry.adapter_factory(bare_plugin)
    assert (factory.__module__, factory.__name__) == (PLUGIN_MODULE, "BareAdapter")


def test_an_adapter_without_run_migrations_is_skipped_with_a_warning(
    bare_plugin: str, control: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the whole run: registered via the plugin, recorded skipped, the run succeeds."""
    from migrator.datasets import add_dataset
    from migrator.db import control_plane

    async def scenario() -> tuple[str, object]:
        async with control_plane(control) as engine:
            row = await add_dataset(
                engine, control, name="plugged", provider=bare_plugin, url="bare://x"
            )
        return row.id, await run_startup_migrations(settings=control)

    caplog.set_level(logging.INFO, logger="migrator")
    dataset_id, summary = asyncio.run(scenario())

    assert summary.status == "succeeded"
    assert summary.counts["skipped"] == 1
    assert [(d.dataset_id, d.status) for d in summary.datasets] == [(dataset_id, "skipped")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"Vector adapter 'bare' has no run_migrations; skipping dataset plugged ({dataset_id})."
    ]
    assert asyncio.run(cached(control, dataset_id))["vector_schema_version"] is None


def test_migrate_target_skips_an_adapter_without_run_migrations(
    bare_plugin: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from migrator.runs.dataset import migrate_target

    t = target("bare://anywhere")
    t = type(t)(t.dataset_id, t.name, bare_plugin, t.url)
    outcome = asyncio.run(migrate_target(t, settings))
    assert (outcome.status, outcome.error) == ("skipped", "adapter has no run_migrations")
    assert any(
        r.levelno == logging.WARNING and t.dataset_id in r.getMessage() for r in caplog.records
    )
