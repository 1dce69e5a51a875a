"""Lineage hook overhead: a 20-node pipeline over 1M-row datasets, with and without it.

Both variants run the same pipeline with Kedro's SequentialRunner on a parquet-backed
catalog in one process, alternating, after a warm-up run that creates the SQLite
tracking store. The hook fingerprints the pipeline's input file (cached by size and
mtime after the first run), records tags, parameters, graph and lock file, and times
every node. Each run ends with ``os.sync()``: SQLite's fsync at the end of the run
would otherwise flush the pipeline's own unwritten parquet (about 800 MB here) and
charge that disk time to the hook.

It runs twice: with the SQLite tracking store in the workspace (the embedded default,
on the disk the pipeline writes to) and with the store on a RAM disk (``/dev/shm``),
which isolates the hook's own cost from the store's fsyncs. Targets: overhead <= 3 %
of wall time and <= 30 ms per node.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset

from bankplatform.lineage.hooks import LineageHook

REPO = Path(__file__).resolve().parents[1]
NODES = 20
REPEATS = 3


def _step(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(value=frame["value"] * 1.0001 + 1.0)


def _pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(_step, f"table_{i}", f"table_{i + 1}", name=f"step_{i:02d}_node")
            for i in range(NODES)
        ]
    )


def _catalog(folder: Path) -> DataCatalog:
    return DataCatalog(
        datasets={
            f"table_{i}": ParquetDataset(filepath=str(folder / f"table_{i}.parquet"))
            for i in range(NODES + 1)
        }
    )


def _workspace(folder: Path, rows: int) -> Path:
    for name in ("pyproject.toml", ".kedro.yml", "requirements.lock"):
        shutil.copy(REPO / name, folder / name)
    shutil.copytree(
        REPO / "conf", folder / "conf", ignore=shutil.ignore_patterns("local")
    )
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
    (folder / "data").mkdir()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {f"col_{c}": rng.normal(size=rows) for c in range(4)}
        | {"value": rng.normal(size=rows)}
    )
    frame.to_parquet(folder / "data" / "table_0.parquet")
    return folder


def _run(root: Path, hook: LineageHook | None, context: Any) -> float:
    pipeline, catalog = _pipeline(), _catalog(root / "data")
    manager = _create_hook_manager()
    run_params = {
        "project_path": str(root),
        "env": "test",
        "pipeline_names": ["benchmark"],
        "runner": "SequentialRunner",
    }
    if hook is not None:
        manager.register(hook)
        hook.after_context_created(context)
    started = time.perf_counter()
    manager.hook.before_pipeline_run(
        run_params=run_params, pipeline=pipeline, catalog=catalog
    )
    SequentialRunner().run(pipeline, catalog, manager)
    manager.hook.after_pipeline_run(
        run_params=run_params, run_result={}, pipeline=pipeline, catalog=catalog
    )
    return time.perf_counter() - started


def main(quick: bool = False) -> None:
    """Measure with the store in the workspace, then on a RAM disk."""
    rows = 100_000 if quick else 1_000_000
    _measure(rows, "SQLite store in the workspace (embedded default)", None)
    ram = Path("/dev/shm")  # noqa: S108 - a private mkdtemp below it, removed after
    if ram.is_dir():
        with tempfile.TemporaryDirectory(dir=ram) as store:
            _measure(
                rows,
                "SQLite store on a RAM disk (the hook's own cost)",
                Path(store) / "mlflow.db",
            )


def _measure(rows: int, label: str, store: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = _workspace(Path(tmp), rows)
        if store is not None:
            (root / "conf" / "test" / "mlflow.yml").write_text(
                f"server:\n  mlflow_tracking_uri: sqlite:///{store}\n"
            )
        os.chdir(root)
        bootstrap_project(root)
        context = KedroSession.create(project_path=root, env="test").load_context()
        _run(
            root, LineageHook(), context
        )  # warm-up: creates the SQLite store and caches
        bare, traced = [], []
        for _ in range(REPEATS):
            bare.append(_run(root, None, context))
            traced.append(_run(root, LineageHook(), context))
        os.chdir(REPO)
    bare_s, traced_s = statistics.median(bare), statistics.median(traced)
    overhead = traced_s - bare_s
    print(
        f"  {label}: {NODES} nodes over {rows:,}-row parquet tables, median of {REPEATS}"
    )
    print(f"  without lineage hook: {bare_s:6.2f} s")
    print(f"  with lineage hook:    {traced_s:6.2f} s")
    print(
        f"  overhead: {100 * overhead / bare_s:+.1f} % of wall time (target <= 3 %), "
        f"{1000 * overhead / NODES:+.1f} ms per node (target <= 30 ms); ratio {traced_s / bare_s:.3f}x"
    )
