"""Register ``bench-noop`` through the ``dataset_migrator.vector_adapters`` entry point group by
writing a dist-info directory and putting it on the path of this process and its children."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from migrator.constants import ADAPTER_ENTRY_POINT_GROUP

DIST = "dataset_migrator_bench_noop-1.0.dist-info"


def install_noop_entry_point(root: Path) -> Path:
    dist_info = root / DIST
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dataset-migrator-bench-noop\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ADAPTER_ENTRY_POINT_GROUP}]\nbench-noop = bench.noop_adapter:NoopAdapter\n"
    )
    repo = str(Path(__file__).resolve().parent.parent)
    for entry in (str(root), repo):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(root), repo, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return dist_info
