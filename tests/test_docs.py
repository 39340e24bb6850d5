"""The README documents every setting and the exit codes the code defines, and the two set-up
commands exist and are executable."""

from __future__ import annotations

import os
import re

from migrator.errors import EXIT_CODES
from migrator.settings import Settings
from tests.support.environment import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
    assert missing == []


def test_readme_commands_exist_and_ci_runs_the_test_command() -> None:
    for script in ("scripts/demo", "scripts/test"):
        assert script in README
        assert os.access(PROJECT_ROOT / script, os.X_OK)
    assert "scripts/test" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_the_readme_exit_code_table_is_the_code_s() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README, flags=re.MULTILINE))
    assert {int(code): text for code, text in rows.items()} == EXIT_CODES
