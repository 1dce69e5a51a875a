"""Working with the Feast store: register definitions, point-in-time training sets,
online lookups, each failure a one-line ``FeatureStoreError``."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import weakref
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView, FileSource
from feast.errors import FeastObjectNotFoundException

from bankplatform.errors import BankplatformError

_log = logging.getLogger(__name__)

ROW_ID = "_row_id"


class FeatureStoreError(BankplatformError):
    """A feature store request that cannot be served: the message says why."""


def service_features(service: FeatureService) -> list[str]:
    """``view:feature`` references a feature service serves, in order."""
    return [
        f"{projection.name_to_use()}:{feature.name}"  # type: ignore[no-untyped-call]
        for projection in service.feature_view_projections
        for feature in projection.features
    ]


def feature_names(service: FeatureService) -> list[str]:
    """The column names of the features a service serves, in order."""
    return [ref.partition(":")[2] for ref in service_features(service)]


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


def materialize(
    store: FeatureStore,
    views: Sequence[str],
    end: datetime,
    start: datetime = datetime(1970, 1, 2),
) -> None:
    """Load the latest value per customer between ``start`` and ``end`` into the
    online store.

    Feast's offline store finds each entity's latest row among the rows in the
    range, so the range bounds its work: a table where every customer has a row at
    the latest snapshot needs only that instant (what the features pipeline does).
    Feast prints its progress (coloured, one line per view) to stdout; it goes to
    the debug log instead, and the run's report says what was materialised.
    """
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        store.materialize(start_date=start, end_date=end, feature_views=list(views))
    _log.debug("feast materialize: %s", printed.getvalue().strip())
