"""Every place that says how to serve the worked example says the same thing, and its paths
exist: .env.example (docker compose), the Kubernetes recipe, the README, and the image."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.environment import PROJECT_ROOT
from tests.support.notes_app import adoption_env

IMAGE_ROOT = "/app"  # the Dockerfile's WORKDIR
VARIABLES = ("APP_ALEMBIC_CONFIG", "VECTOR_MIGRATIONS", "DATASET_SOURCE", "PYTHONPATH")


def _expected(root: str) -> dict[str, str]:
    """The four variables with paths under ``root`` (the image's /app, or a checkout's '')."""
    prefix = f"{root}/" if root else ""
    env = adoption_env()
    env["PYTHONPATH"] = str(PROJECT_ROOT / "examples")
    return {
        key: value.replace(f"{PROJECT_ROOT}/", prefix) if key != "DATASET_SOURCE" else value
        for key, value in env.items()
    }


def _read(path: str) -> str:
    return (PROJECT_ROOT / path).read_text()


def test_env_example_and_the_kubernetes_recipe_name_the_image_s_paths() -> None:
    env_example = dict(re.findall(r"^# ([A-Z_]+)=(.+)$", _read(".env.example"), re.MULTILINE))
    k8s = dict(
        re.findall(
            r'- name: ([A-Z_]+)\n\s+value: "?(.+?)"?$',
            _read("docs/celery-and-triggers.md"),
            re.MULTILINE,
        )
    )
    expected = _expected(IMAGE_ROOT)
    assert {k: env_example.get(k) for k in VARIABLES} == expected
    assert {k: k8s.get(k) for k in VARIABLES} == expected
    assert "COPY examples ./examples" in _read("Dockerfile")
    assert "examples" not in _read(".dockerignore").split()
    for key in ("APP_ALEMBIC_CONFIG", "VECTOR_MIGRATIONS", "PYTHONPATH"):
        assert Path(expected[key].replace(IMAGE_ROOT, str(PROJECT_ROOT), 1)).exists(), key


def test_the_readme_walk_through_exports_the_same_variables() -> None:
    exported = dict(
        re.findall(r"^export ([A-Z_]+)='?(.+?)'?(?:\s+#.*)?$", _read("README.md"), re.MULTILINE)
    )
    assert {k: exported.get(k) for k in VARIABLES} == _expected("")
