"""Working with the Feast store: register definitions, point-in-time training sets,
online lookups, each failure a one-line ``FeatureStoreError``."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView, FileSource
from feast.errors import FeastObjectNotFoundException

from bankplatform.datasets.classified_parquet import restrict_feature_files
from bankplatform.errors import BankplatformError
from bankplatform.feature_repo.services import service_features
from bankplatform.features.sqlite_online import bulk_writable, write_sqlite_online

ROW_ID = "_row_id"
# Rows per online write (each becomes protobuf values in memory at once).
ONLINE_WRITE_ROWS = 10_000


class FeatureStoreError(BankplatformError):
    """A feature store request that cannot be served: the message says why."""


def register_definitions(store: FeatureStore, objects: Sequence[Any]) -> dict[str, Any]:
    """``feast apply`` the definitions; idempotent, refuses silent service edits.

    Raises:
        FeatureStoreError: A registered feature service would change its features.
    """
    for service in (o for o in objects if isinstance(o, FeatureService)):
        try:
            registered = store.get_feature_service(service.name, allow_cache=False)
        except FeastObjectNotFoundException:
            continue
        before, after = (
            set(service_features(registered)),
            set(service_features(service)),
        )
        if before != after:
            added = ", ".join(sorted(after - before)) or "none"
            removed = ", ".join(sorted(before - after)) or "none"
            msg = (
                f"feature service {service.name} is registered with other features "
                f"(added: {added}; removed: {removed}); register it under a new version name"
            )
            raise FeatureStoreError(msg)
    store.apply(_anchored(objects, Path(store.config.repo_path or ".")))
    restrict_feature_files(Path(store.config.repo_path or "."))
    return {
        "project": store.project,
        "feature_views": sorted(v.name for v in store.list_feature_views()),
        "feature_services": {
            s.name: {"version": s.tags.get("version"), "features": service_features(s)}
            for s in store.list_feature_services()
        },
    }


def _anchored(objects: Sequence[Any], repo: Path) -> list[Any]:
    """Copies whose file sources point at absolute paths under ``repo``.

    Feast's DuckDB offline store reads a source's path as given, not relative to
    the repo folder, so relative paths are anchored here at every apply.
    """
    copies = copy.deepcopy(list(objects))
    sources = [o for o in copies if isinstance(o, FileSource)]
    sources += [
        o.batch_source
        for o in copies
        if isinstance(o, FeatureView) and isinstance(o.batch_source, FileSource)
    ]
    for source in sources:
        source.file_options.uri = FileSource.get_uri_for_file_path(
            repo, source.file_options.uri
        )
    return copies


def check_feature_refs(store: FeatureStore, refs: Sequence[str]) -> None:
    """Every ``view:feature`` must exist in the registry.

    The registry's views are cached per store and re-read once before a
    reference is declared unknown, so a lookup costs no registry read.

    Raises:
        FeatureStoreError: Naming the first unknown view or feature.
    """
    views = _known_views(store, refresh=False)
    for ref in refs:
        view_name, _, feature = ref.partition(":")
        if feature not in views.get(view_name, ()):
            views = _known_views(store, refresh=True)
        if view_name not in views:
            msg = f"unknown feature view {view_name!r} in {ref!r}; known: {', '.join(sorted(views))}"
            raise FeatureStoreError(msg)
        if feature not in views[view_name]:
            msg = f"unknown feature {ref!r}; {view_name} has: {', '.join(views[view_name])}"
            raise FeatureStoreError(msg)


# Keyed by the store object itself (weakly): an id() could be reused by a new store.
_VIEWS: weakref.WeakKeyDictionary[FeatureStore, dict[str, list[str]]] = (
    weakref.WeakKeyDictionary()
)


def _known_views(store: FeatureStore, *, refresh: bool) -> dict[str, list[str]]:
    if refresh or store not in _VIEWS:
        _VIEWS[store] = {
            view.name: [f.name for f in view.features]
            for view in store.list_all_feature_views(allow_cache=not refresh)
        }
    return _VIEWS[store]


def training_set(
    store: FeatureStore, entity_frame: pd.DataFrame, service: FeatureService
) -> pd.DataFrame:
    """Point-in-time correct features for each entity row, in the frame's order.

    Feast does not keep the entity frame's row order, so a row id travels with it.

    Args:
        store: The feature store.
        entity_frame: Join keys and ``event_timestamp`` (UTC), one row per example.
        service: The feature service to serve.

    Returns:
        The entity frame's columns plus the features; same rows, same order.

    Raises:
        FeatureStoreError: A join key or the timestamp is missing, or rows were lost.
    """
    needed = {"event_timestamp"} | {
        key
        for projection in service.feature_view_projections
        for key in store.get_feature_view(projection.name).join_keys
    }
    missing = sorted(needed - set(entity_frame.columns))
    if missing:
        msg = f"entity frame lacks column(s) {', '.join(missing)} needed by {service.name}"
        raise FeatureStoreError(msg)
    framed = entity_frame.assign(**{ROW_ID: range(len(entity_frame))})
    result = store.get_historical_features(entity_df=framed, features=service).to_df()
    if len(result) != len(entity_frame):
        msg = f"feature store returned {len(result)} rows for {len(entity_frame)} entity rows"
        raise FeatureStoreError(msg)
    result = result.sort_values(ROW_ID).drop(columns=ROW_ID).reset_index(drop=True)
    return result[
        [
            *entity_frame.columns,
            *[c for c in result.columns if c not in entity_frame.columns],
        ]
    ]


def online_customer_features(
    store: FeatureStore, customer_tokens: Sequence[str], refs: Sequence[str]
) -> pd.DataFrame:
    """Online features of known customers.

    Raises:
        FeatureStoreError: An unknown feature, or a customer the online store lacks.
    """
    check_feature_refs(store, refs)
    response = store.get_online_features(
        features=list(refs),
        entity_rows=[{"customer_token": token} for token in customer_tokens],
    ).to_dict()
    features = [ref.partition(":")[2] for ref in refs]
    unknown = [
        token
        for row, token in enumerate(response["customer_token"])
        if all(response[name][row] is None for name in features)
    ]
    if unknown:
        msg = f"unknown customer token(s) in the online store: {', '.join(map(str, unknown[:5]))}"
        raise FeatureStoreError(msg)
    return pd.DataFrame(response)


def write_online(
    store: FeatureStore,
    views: Sequence[str],
    rows: Iterable[pd.DataFrame],
    batch_rows: int = ONLINE_WRITE_ROWS,
) -> int:
    """Write rows (one per entity, its latest values) into the online store, view by
    view, in the order given, ``batch_rows`` at a time.

    Feast's ``materialize`` hands its offline query's rows over in no particular
    order; on the SQLite online store each upsert then lands at a random place in
    the (entity key, feature) index, and once the index outgrows SQLite's page
    cache the time grows faster than the entities (measured: 55 s at 100k
    customers, 800 s at 1M). Rows in key order (the snapshot table is sorted by
    customer token) extend the index at its end instead. On the SQLite store the
    rows are made a column at a time and written with one statement per batch
    (``sqlite_online``); other stores get Feast's own write.

    Returns:
        The rows written (per view).
    """
    written = 0
    resolved = [store.get_feature_view(view) for view in views]
    for frame in rows:
        for start in range(0, len(frame), batch_rows):
            part = frame.iloc[start : start + batch_rows]
            for view in resolved:
                if bulk_writable(store, view):
                    write_sqlite_online(store, view, part)
                else:
                    store.write_to_online_store(view.name, part)
        written += len(frame)
    restrict_feature_files(Path(store.config.repo_path or "."))
    return written
