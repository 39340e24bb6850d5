"""What a trigger asks of a broker run, and the check of the message that carries it.

A ``RunRequest`` travels in the parent task's message as ids and flags only; the parent turns
it into a list of dataset ids after the relational step (``migrator.runs.selection``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrator.dataset_ids import id_problem
from migrator.datasets import as_uuid
from migrator.errors import MessageRefusedError, UsageError
from migrator.runs.rollout import Rollout
from migrator.states import Trigger, sql_values

_MESSAGE_FIELDS = {
    "trigger",
    "requested_by",
    "dataset_ids",
    "verify",
    "retry_of",
    "extra_ids",
    "rollout",
    "to_revision",
    "downgrade",
}
# A revision id as a message may carry it: the parent looks it up in its own chain.
REVISION_ID_MAX_CHARS = 255


@dataclass(frozen=True)
class RunRequest:
    """What a trigger asks for. ``extra_ids`` are added to the pending selection (the scheduled
    check's drifted datasets, whose cache says head)."""

    run_id: str
    trigger: Trigger
    requested_by: str | None = None
    dataset_ids: tuple[str, ...] | None = None
    verify: bool = False
    retry_of: str | None = None
    extra_ids: tuple[str, ...] = field(default_factory=tuple)
    rollout: Rollout = field(default_factory=Rollout)
    to_revision: str | None = None
    downgrade: bool = False

    def options(self) -> dict[str, Any]:
        """What the run record keeps of the request."""
        return {
            "verify": self.verify,
            "subset": self.dataset_ids is not None,
            "retry_of": self.retry_of,
            "extra": len(self.extra_ids),
            "to_revision": self.to_revision,
            "downgrade": self.downgrade,
        }

    def to_message(self) -> dict[str, Any]:
        """Keyword arguments of the parent task: JSON types, ids and flags only."""
        return {
            "trigger": str(self.trigger),
            "requested_by": self.requested_by,
            "dataset_ids": list(self.dataset_ids) if self.dataset_ids is not None else None,
            "verify": self.verify,
            "retry_of": self.retry_of,
            "extra_ids": list(self.extra_ids),
            "rollout": self.rollout.to_message(),
            "to_revision": self.to_revision,
            "downgrade": self.downgrade,
        }

    @classmethod
    def from_message(cls, run_id: str, message: dict[str, Any]) -> RunRequest:
        """The request a parent task's message carries; ``MessageRefusedError`` for anything
        else (a forged message naming a URL or a path, or one from an incompatible release).
        The refusal names fields, never their values."""
        _check_message(run_id, message)
        dataset_ids = message.get("dataset_ids")
        return cls(
            run_id=run_id,
            trigger=Trigger(message["trigger"]),
            requested_by=message.get("requested_by"),
            dataset_ids=tuple(dataset_ids) if dataset_ids is not None else None,
            verify=bool(message.get("verify", False)),
            retry_of=message.get("retry_of"),
            extra_ids=tuple(message.get("extra_ids") or ()),
            rollout=_rollout(message.get("rollout")),
            to_revision=message.get("to_revision"),
            downgrade=bool(message.get("downgrade", False)),
        )


def _rollout(data: Any) -> Rollout:
    if data is not None and not isinstance(data, dict):
        raise MessageRefusedError("task message refused: rollout must be an object")
    try:
        rollout = Rollout.from_message(data)
    except UsageError as exc:
        raise MessageRefusedError(f"task message refused: {exc}") from None
    if not all(as_uuid(i) or id_problem(i) is None for i in rollout.canary_ids):
        raise MessageRefusedError(
            "task message refused: canary dataset ids must be UUIDs or dataset source ids"
        )
    return rollout


def _check_message(run_id: Any, message: dict[str, Any]) -> None:
    unknown = sorted(set(message) - _MESSAGE_FIELDS)
    if unknown:
        raise MessageRefusedError(
            f"task message refused: unexpected field(s) {', '.join(map(repr, unknown))}"
        )
    lists = [message.get("dataset_ids"), message.get("extra_ids")]
    kinds_ok = (
        message.get("trigger") in sql_values(Trigger)
        and isinstance(run_id, str)
        and all(
            isinstance(message.get(k), str | None)
            for k in ("requested_by", "retry_of", "to_revision")
        )
        and all(isinstance(message.get(k, False), bool) for k in ("verify", "downgrade"))
        and all(
            ids is None or (isinstance(ids, list) and all(isinstance(i, str) for i in ids))
            for ids in lists
        )
    )
    if not kinds_ok:
        raise MessageRefusedError(
            "task message refused: fields must be: trigger one of "
            f"{', '.join(sql_values(Trigger))}; ids as strings; verify and downgrade booleans"
        )
    to_revision = message.get("to_revision")
    if to_revision is not None and (
        not to_revision.isprintable() or not 0 < len(to_revision) <= REVISION_ID_MAX_CHARS
    ):
        raise MessageRefusedError(
            f"task message refused: to_revision must be a printable revision id of 1 to "
            f"{REVISION_ID_MAX_CHARS} characters"
        )
    if not all(i is None or as_uuid(i) for i in (run_id, message.get("retry_of"))):
        raise MessageRefusedError("task message refused: run ids must be UUIDs")
