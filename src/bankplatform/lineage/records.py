"""What a run's lineage says, built from Kedro objects without touching any data."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kedro.pipeline import Pipeline

from bankplatform.errors import BankplatformError
from bankplatform.lineage.fingerprint import FingerprintCache, local_path
from bankplatform.lineage.sinks import InputRecord
from bankplatform.manifest import WorkspaceManifest
from bankplatform.project import pipeline_names

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
# The Kedro run (its session id) a lineage run records, and that a model version
# registered inside the run names: how the card and the trace find the training.
KEDRO_RUN_TAG = "kedro.run_id"
KEDRO_RUN_ENV_VAR = "BANKPLATFORM_KEDRO_RUN_ID"
_KEDRO_RUN_ID = re.compile(r"[A-Za-z0-9._:+-]{1,100}")
_SELECTION_KEYS = (
    "tags",
    "node_names",
    "from_nodes",
    "to_nodes",
    "from_inputs",
    "to_outputs",
    "namespaces",
)


def flatten_parameters(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as ``a.b.c`` keys; values longer than MLflow takes are cut
    (the full set goes to the ``lineage/parameters.json`` artifact).

    Args:
        params: The env's resolved parameters.
        prefix: Key prefix while recursing.

    Returns:
        Flat string parameters.
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_parameters(value, f"{name}."))
            continue
        text = json.dumps(value, default=str) if not isinstance(value, str) else value
        if len(text) > MAX_PARAM_LENGTH:
            text = text[: MAX_PARAM_LENGTH - 12] + "…[truncated]"
        flat[name] = text
    return flat


def run_tags(
    run_params: dict[str, Any],
    env: str,
    manifest: WorkspaceManifest,
    provenance: dict[str, str],
) -> dict[str, str]:
    """Tags of a run: Kedro env and selection, manifest fields, provenance.

    Args:
        run_params: What Kedro passes to ``before_pipeline_run``.
        env: The Kedro env the run resolved (``run_params`` has ``None`` for the default).
        manifest: The workspace manifest.
        provenance: Git state, identity, notebook, lock hash.

    Returns:
        String tags.
    """
    selection = {k: run_params.get(k) for k in _SELECTION_KEYS if run_params.get(k)}
    runner = run_params.get("runner")
    return {
        "kedro.env": env,
        "kedro.pipelines": "+".join(pipeline_names(run_params)),
        "kedro.selection": json.dumps(selection, sort_keys=True, default=str),
        "kedro.version": str(run_params.get("kedro_version")),
        KEDRO_RUN_TAG: str(run_params.get("run_id") or ""),
        "kedro.runner": _runner_name(runner),
        **workspace_tags(manifest),
        **provenance,
    }


def workspace_tags(manifest: WorkspaceManifest) -> dict[str, str]:
    """The manifest fields every run carries."""
    return {
        "workspace.id": manifest.workspace_id,
        "workspace.model_name": manifest.model_name,
        "workspace.owning_squad": manifest.owning_squad,
        "workspace.model_risk_tier": manifest.model_risk_tier.value,
        "workspace.regulatory_scope": ", ".join(
            r.value for r in manifest.regulatory_scope
        ),
    }


def _runner_name(runner: object) -> str:
    # Kedro passes the runner's repr, e.g. "<kedro.runner.thread_runner.ThreadRunner object at 0x...>".
    text = runner if isinstance(runner, str) else type(runner).__name__
    found = re.search(r"(\w+) object at", text)
    return found.group(1) if found else text


def input_records(
    names: Iterable[str], catalog: Any, cache: FingerprintCache
) -> tuple[list[InputRecord], dict[str, str]]:
    """Fingerprint the datasets a run reads from storage.

    Args:
        names: The pipeline's free inputs.
        catalog: The run's catalog (datasets are looked up, never loaded).
        cache: Fingerprint cache.

    Returns:
        MLflow input records, and tags with each input's full sha256 and any
        feature service the dataset's catalog metadata names.
    """
    records, tags = [], {}
    for name in sorted(names):
        if name.startswith("params:") or name == "parameters" or name not in catalog:
            continue
        dataset = catalog.get(name)
        path = local_path(dataset)
        fingerprint = cache.fingerprint(path) if path is not None else None
        if fingerprint is None:
            continue
        profile = {
            "sha256": fingerprint.sha256,
            "files": fingerprint.files,
            "bytes": fingerprint.size,
        }
        records.append(
            InputRecord(
                name, fingerprint.digest, fingerprint.source, json.dumps(profile)
            )
        )
        tags[f"input.{name}.sha256"] = fingerprint.sha256
        tags.update(_feature_service_tags(name, getattr(dataset, "metadata", None)))
    return records, tags


def read_dataset_tags(
    names: Iterable[str], catalog: Any, cache: FingerprintCache, root: Path
) -> dict[str, str]:
    """The sha256 and file of each dataset a run made and then read (the feature
    snapshots, the training set: ``read.<name>.sha256`` and ``read.<name>.source``,
    relative to the workspace ``root`` when inside it), fingerprinted as the run
    left them, so that ``decision trace`` can tell when a byte of what trained a
    model changed afterwards."""
    tags: dict[str, str] = {}
    for name in sorted(names):
        if name.startswith("params:") or name == "parameters" or name not in catalog:
            continue
        path = local_path(catalog.get(name))
        fingerprint = cache.fingerprint(path) if path is not None else None
        if fingerprint is None:
            continue
        source = Path(fingerprint.source)
        if source.is_relative_to(root):
            source = source.relative_to(root)
        tags[f"read.{name}.sha256"] = fingerprint.sha256
        tags[f"read.{name}.source"] = source.as_posix()
    return tags


def output_feature_service_tags(names: Iterable[str], catalog: Any) -> dict[str, str]:
    """Feature service tags of the training sets a run writes (catalog metadata)."""
    tags: dict[str, str] = {}
    for name in sorted(names):
        if name in catalog:
            metadata = getattr(catalog.get(name), "metadata", None)
            tags.update(_feature_service_tags(name, metadata))
    return tags


def _feature_service_tags(name: str, metadata: dict[str, Any] | None) -> dict[str, str]:
    service = (metadata or {}).get("feature_service")
    if not isinstance(service, dict):
        return {}
    features = service.get("features") or _registered_features(str(service.get("name")))
    return {
        "feast.feature_service": str(service.get("name")),
        "feast.feature_service_version": str(service.get("version")),
        "feast.features": ",".join(map(str, features))[:8000],
        "feast.training_set": name,
    }


def _registered_features(service_name: str) -> list[str]:
    """The features a service of our Feast repository serves (empty if unknown)."""
    # Imported only when a training set is recorded: Feast is slow to import.
    from bankplatform.feature_repo import FEATURE_SERVICES  # noqa: PLC0415
    from bankplatform.feature_repo.services import service_features  # noqa: PLC0415

    service = FEATURE_SERVICES.get(service_name)
    return service_features(service) if service is not None else []


def pipeline_graph(pipeline: Pipeline) -> str:
    """The run's pipeline as JSON: nodes with their inputs, outputs and tags."""
    nodes = [
        {
            "name": node.name,
            "inputs": list(node.inputs),
            "outputs": list(node.outputs),
            "tags": sorted(node.tags),
        }
        for node in pipeline.nodes
    ]
    return json.dumps(
        {
            "nodes": nodes,
            "inputs": sorted(pipeline.inputs()),
            "outputs": sorted(pipeline.outputs()),
        },
        indent=2,
    )


def current_kedro_run() -> str:
    """The id of the Kedro run this process works in (set by the lineage hook for
    the run's duration), empty outside one."""
    return os.environ.get(KEDRO_RUN_ENV_VAR, "")


def lineage_run_of(client: Any, experiment_id: str, kedro_run_id: str) -> Any | None:
    """The lineage run of the Kedro run ``kedro_run_id`` (recorded when a version was
    registered), or ``None`` when none was recorded, the store has none, or more
    than one run claims it (a run tag anyone with tracking access can set: two
    claimants are not a lineage to show or re-hash).

    Raises:
        BankplatformError: ``kedro_run_id`` is not a Kedro run id.
    """
    if not kedro_run_id:
        return None
    if not _KEDRO_RUN_ID.fullmatch(kedro_run_id):
        msg = f"not a Kedro run id: {kedro_run_id[:100]!r}"
        raise BankplatformError(msg)
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KEDRO_RUN_TAG}` = '{kedro_run_id}'",
        max_results=2,
    )
    return runs[0] if len(runs) == 1 else None
