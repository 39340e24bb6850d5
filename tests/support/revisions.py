"""The packaged vector revision chain, as tests name it: never a hard-coded head."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

from migrator.vector.revisions import load_chain

PACKAGED: list[str] = load_chain().ids()
HEAD: str = PACKAGED[-1]
LANG = "0004_add_lang"


def revision_file(folder: Path, revision: str, down: str, body: str, *, downgrade: bool) -> None:
    undo = "\n\ndef downgrade(op):\n    op.drop_column('chunks', 'lang')\n" if downgrade else ""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{revision}.py").write_text(
        dedent(f'''\
            """{revision}"""

            revision = {revision!r}
            down_revision = {down!r}


            def upgrade(op):
            {body}
            ''')
        + undo
    )


def app_folder(root: Path, *, downgradable: bool = True) -> Path:
    """An application folder: one revision on top of the packaged head."""
    folder = root / "app_vector_migrations"
    body = "    op.add_column('chunks', 'lang', 'string', default='en')"
    revision_file(folder, LANG, HEAD, body, downgrade=downgradable)
    return folder
