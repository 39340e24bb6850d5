"""Planning: run one revision's ``upgrade``/``downgrade`` against a snapshot and keep what it
recorded. Executors, ``check`` (offline, on an empty snapshot) and ``--sql`` share this."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from migrator.vector.revisions.chain import RevisionChain
from migrator.vector.revisions.errors import InvalidOperationError, RevisionCodeError
from migrator.vector.revisions.history import DatasetContext
from migrator.vector.revisions.ops import Operation
from migrator.vector.revisions.providers import PROVIDERS
from migrator.vector.revisions.recorder import Operations
from migrator.vector.revisions.script import Revision
from migrator.vector.revisions.snapshot import Snapshot

log = logging.getLogger(__name__)
UPGRADE = "upgrade"
DOWNGRADE = "downgrade"
CHECK_CONTEXT = DatasetContext("check", "check", 384)


def plan_revision(
    revision: Revision,
    direction: str,
    provider: str,
    context: DatasetContext,
    snapshot: Snapshot,
) -> list[Operation]:
    """The operations ``revision`` asks for on one dataset; [] when it is for other providers."""
    step = revision.upgrade if direction == UPGRADE else revision.downgrade
    assert step is not None, "downgrade_path refuses revisions without downgrade"
    if not revision.supports(provider):
        # Declared for other providers only: recorded as applied there, with nothing to do.
        log.info("Revision %s is not for %s; nothing to do.", revision.revision, provider)
        return []
    operations = Operations(
        revision=revision.revision,
        provider=provider,
        dataset_id=context.dataset_id,
        dataset_name=context.dataset_name,
        vector_dimension=context.vector_dimension,
        snapshot=snapshot,
    )
    try:
        step(operations)
    except InvalidOperationError:
        raise
    except Exception as exc:
        raise RevisionCodeError(revision.path, revision.revision, direction, exc) from exc
    return list(operations.recorded)


@dataclass(frozen=True)
class CheckedRevision:
    """What ``check_chain`` found for one revision on one provider."""

    revision: str
    provider: str
    upgrade_ops: int
    downgrade_ops: int | None  # None: the revision has no downgrade


def check_chain(
    chain: RevisionChain, providers: Iterable[str] = PROVIDERS
) -> list[CheckedRevision]:
    """Offline: record every revision's upgrade and downgrade for every provider on an empty
    dataset; the first invalid operation or failing revision code raises, naming it."""
    checked = []
    for provider in providers:
        for revision in chain.revisions:
            up = plan_revision(revision, UPGRADE, provider, CHECK_CONTEXT, Snapshot())
            down = None
            if revision.downgrade is not None:
                down = len(plan_revision(revision, DOWNGRADE, provider, CHECK_CONTEXT, Snapshot()))
            checked.append(CheckedRevision(revision.revision, provider, len(up), down))
    return checked
