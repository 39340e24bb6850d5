"""A revision folder is one clean linear chain or it is refused before any dataset is touched,
with the file at fault named; heads, history and paths between revisions; the template."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.errors import MigratorError
from migrator.vector.revisions import DEFAULT_FOLDER, load_chain, write_revision
from migrator.vector.revisions.errors import (
    BadRevisionAttributeError,
    DuplicateRevisionError,
    MissingDowngradeError,
    MissingUpgradeError,
    MultipleHeadsError,
    RevisionCycleError,
    RevisionError,
    RevisionFolderNotFoundError,
    RevisionImportError,
    UnknownDownRevisionError,
    UnknownRevisionError,
)
from migrator.vector.revisions.template import render_revision
from tests.vector.revisions.support import revision_file, write_folder

UP = "op.create_collection('t', {'id': 'string'})"


def chain_of(tmp_path: Path, *specs: tuple[str, str | None]) -> dict[str, str]:
    return {
        f"{rev}.py": revision_file(rev, down, UP, "op.drop_collection('t')") for rev, down in specs
    }


def refused(folder: Path, error: type[Exception], *fragments: str) -> Exception:
    with pytest.raises(error) as caught:
        load_chain(folder)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert isinstance(caught.value, MigratorError)
    return caught.value


def test_a_linear_folder_gives_head_history_and_paths(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", chain_of(tmp_path, ("a", None), ("b", "a"), ("c", "b")))
    chain = load_chain(folder)
    assert chain.ids() == ["a", "b", "c"] and chain.head == "c"
    assert [r.revision for r in chain.upgrade_path(None)] == ["a", "b", "c"]
    assert [r.revision for r in chain.upgrade_path("a", "b")] == ["b"]
    assert [r.revision for r in chain.downgrade_path("c", "a")] == ["c", "b"]
    assert [r.revision for r in chain.downgrade_path("c", None)] == ["c", "b", "a"]
    assert chain.current_of(["b", "a"]) == "b" and chain.current_of([]) is None
    assert chain.get("b").message == "b."
    with pytest.raises(RevisionError, match="target is below it"):
        chain.upgrade_path("c", "a")


def test_two_heads_are_refused_naming_both_files(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", chain_of(tmp_path, ("a", None), ("b", "a"), ("c", "a")))
    error = refused(folder, MultipleHeadsError, "a.py", "b.py", "c.py", "several heads")
    assert sorted(rev for rev, _ in error.heads) == ["b", "c"]  # type: ignore[attr-defined]


def test_two_bases_are_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", chain_of(tmp_path, ("a", None), ("b", None)))
    refused(folder, MultipleHeadsError, "b.py", "'a'", "'b'")


def test_an_unknown_down_revision_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", chain_of(tmp_path, ("a", None), ("b", "zzz")))
    refused(folder, UnknownDownRevisionError, "b.py", "'zzz'")


def test_a_missing_down_revision_attribute_is_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", {"a.py": "revision = 'a'\ndef upgrade(op): pass\n"})
    refused(folder, BadRevisionAttributeError, "a.py", "down_revision")


def test_a_cycle_is_refused_naming_the_loop(tmp_path: Path) -> None:
    specs = (("base", None), ("a", "c"), ("b", "a"), ("c", "b"))
    folder = write_folder(tmp_path / "v", chain_of(tmp_path, *specs))
    error = refused(folder, RevisionCycleError, "cycle", ".py")
    assert set(error.cycle) == {"a", "b", "c"}  # type: ignore[attr-defined]


def test_a_duplicate_id_is_refused_naming_both_files(tmp_path: Path) -> None:
    files = chain_of(tmp_path, ("a", None), ("b", "a"))
    files["b_again.py"] = revision_file("b", "a", UP)
    folder = write_folder(tmp_path / "v", files)
    refused(folder, DuplicateRevisionError, "b_again.py", "b.py", "'b'")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("revision = 'a'\ndown_revision = None\ndef upgrade(op) pass\n", "SyntaxError"),
        ("import not_a_module_anywhere\n", "ModuleNotFoundError"),
        ("raise RuntimeError('boom at import')\n", "boom at import"),
    ],
)
def test_a_file_that_does_not_import_is_refused(tmp_path: Path, text: str, why: str) -> None:
    folder = write_folder(tmp_path / "v", {"a.py": text})
    error = refused(folder, RevisionImportError, "a.py", why)
    assert error.path == folder / "a.py"  # type: ignore[attr-defined]


def test_a_revision_without_upgrade_is_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", {"a.py": "revision = 'a'\ndown_revision = None\n"})
    refused(folder, MissingUpgradeError, "a.py", "no upgrade(op)")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("down_revision = ('x', 'y')", "linear"),
        ("providers = 'pgvector'", "providers must be a tuple"),
        ("revision = ''", "non-empty"),
    ],
)
def test_bad_attributes_are_refused(tmp_path: Path, line: str, why: str) -> None:
    text = "revision = 'a'\ndown_revision = None\ndef upgrade(op): pass\n" + line + "\n"
    folder = write_folder(tmp_path / "v", {"a.py": text})
    refused(folder, BadRevisionAttributeError, "a.py", why)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    refused(tmp_path / "nowhere", RevisionFolderNotFoundError, "nowhere", "VECTOR_MIGRATIONS")


def test_an_application_folder_may_build_on_a_built_in_revision(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "app",
        {"x.py": revision_file("app_1", "0002_add_created_at_and_deleted", "pass")},
    )
    chain = load_chain(folder)
    assert chain.ids() == ["0001_create_collections", "0002_add_created_at_and_deleted", "app_1"]
    assert chain.revisions[0].path.parent == DEFAULT_FOLDER


def test_a_recorded_revision_the_folder_does_not_know_fails_naming_it(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", chain_of(tmp_path, ("a", None)))
    chain = load_chain(folder)
    with pytest.raises(UnknownRevisionError, match=r"'newer_elsewhere' \(recorded by"):
        chain.current_of(["a", "newer_elsewhere"])


def test_a_downgrade_through_a_revision_without_downgrade_is_refused(tmp_path: Path) -> None:
    files = chain_of(tmp_path, ("a", None))
    files["b.py"] = revision_file("b", "a", UP)  # no downgrade
    chain = load_chain(write_folder(tmp_path / "v", files))
    with pytest.raises(MissingDowngradeError, match=r"b\.py: revision 'b' has no downgrade"):
        chain.downgrade_path("b", None)
    assert [r.revision for r in chain.downgrade_path("a", None)] == ["a"]


def test_the_template_writes_a_revision_on_top_of_the_head(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", chain_of(tmp_path, ("0001_a", None)))
    path = write_revision(load_chain(folder), "Add a language column!")
    assert path.name == "0002_add_a_language_column.py"
    chain = load_chain(folder)
    assert chain.head == "0002_add_a_language_column"
    new = chain.get("0002_add_a_language_column")
    assert new.down_revision == "0001_a" and new.message == "Add a language column!"
    assert new.downgrade is not None
    for message in ('say """hi"""', 'ends in a quote"', "ends in a backslash \\"):
        path = tmp_path / "r9" / "r9.py"
        write_folder(path.parent, {"r9.py": render_revision(message, "r9", None)})
        loaded = load_chain(path.parent)
        assert loaded.ids() == ["r9"] and loaded.revisions[0].message == message
