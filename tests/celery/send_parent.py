"""``python -m tests.celery.send_parent RUN_ID``: send a deploy run's parent message straight to
the broker, through an app built from this process's environment (so signed with whatever key
CELERY_SIGNING_* name there), without taking the run lock as a trigger would."""

from __future__ import annotations

import sys

from migrator.constants import TASK_MIGRATE_RUN
from migrator.runs.request import RunRequest
from migrator.states import Trigger
from worker import create_app


def main(run_id: str) -> None:
    message = RunRequest(run_id=run_id, trigger=Trigger.DEPLOY).to_message()
    app = create_app()
    try:
        app.send_task(TASK_MIGRATE_RUN, args=(run_id,), kwargs=message, task_id=run_id)
    finally:
        app.close()


if __name__ == "__main__":
    main(sys.argv[1])
