"""Loading Feast's SQLite online store in bulk: the rows Feast's own write makes,
made a column at a time.

Feast's ``SqliteOnlineStore.online_write_batch`` turns every value into a protobuf
object and runs one ``INSERT ... ON CONFLICT`` statement per (customer, feature):
483 s for a million customers' 32 features here. This writes the same rows (the
same serialized entity key, the same ``ValueProto`` bytes, ``value_text`` and
``event_ts``; tested byte for byte against Feast's write) with one
``executemany`` per batch, in entity-key order so the primary key's B-tree grows
at its end. Doubles, most of the values, are encoded as a column (a ``ValueProto``
holding a double is its field tag then the value's 8 little-endian bytes); other
types go through protobuf once per distinct value. A view with any other type, or
a store with vectors or the value-number column switched on, is Feast's to write.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import (  # Feast's own table naming
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Float64, Int64, String

# ValueProto's double_val: field 5, wire type 1 (64-bit).
_DOUBLE_TAG = np.uint8((5 << 3) | 1)
_DOUBLE_VALUE = np.dtype([("tag", "u1"), ("value", "<f8")])
_ENCODED_TYPES = (Float64, Int64, String)


def bulk_writable(store: FeatureStore, view: FeatureView) -> bool:
    """Whether this module writes ``view`` in ``store`` (else Feast does)."""
    online = store.config.online_store
    return (
        isinstance(online, SqliteOnlineStoreConfig)
        and not online.vector_enabled
        and not getattr(online, "enable_openai_compatible_store", False)
        and len(view.entity_columns) == 1
        and all(field.dtype in _ENCODED_TYPES for field in view.features)
    )


def write_sqlite_online(
    store: FeatureStore, view: FeatureView, frame: pd.DataFrame
) -> None:
    """Upsert one row per entity of ``frame`` (its join key, ``event_timestamp``
    and the view's features) into the view's table, in one transaction."""
    online = store._get_provider().online_store
    connection = online._get_conn(store.config)  # type: ignore[attr-defined]  # SqliteOnlineStore's
    table = _table_id(
        store.project, view, store.config.registry.enable_online_feature_view_versioning
    )
    key = view.entity_columns[0].name
    keys = entity_keys(frame[key], store.config.entity_key_serialization_version)
    order = np.argsort(np.asarray(keys, dtype=object), kind="stable")
    stamps = _event_times(frame["event_timestamp"])
    columns = [
        (field.name, *_encoded(frame[field.name], field.dtype))
        for field in sorted(view.features, key=lambda f: f.name)
    ]
    rows = (
        (keys[i], name, values[i], texts[i], stamps[i], None)
        for i in order.tolist()
        for name, values, texts in columns
    )
    sql = (
        f"INSERT INTO {_quote_id(table)} "  # noqa: S608 - Feast's own quoting of its table name
        "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )
    with connection:
        connection.executemany(sql, rows)


def entity_keys(values: pd.Series, version: int) -> list[bytes]:
    """Feast's serialized entity key of each value of a string join key."""
    name = str(values.name)
    return [
        serialize_entity_key(
            EntityKey(join_keys=[name], entity_values=[Value(string_val=v)]),
            entity_key_serialization_version=version,
        )
        for v in values.astype(str).tolist()
    ]


def _event_times(times: pd.Series) -> list[int]:
    """What Feast's SQLite adapter keeps of its naive UTC datetime: whole seconds
    of ``datetime.timestamp()`` (which reads a naive time as local, as Feast's
    converter does when it reads it back)."""
    naive = pd.to_datetime(times, utc=True).dt.tz_localize(None)
    seconds = {t: int(t.to_pydatetime().timestamp()) for t in naive.unique()}
    return [seconds[t] for t in naive.tolist()]


def _encoded(values: pd.Series, dtype: object) -> tuple[list[bytes], list[str | None]]:
    """Each value's ``ValueProto`` bytes and its ``value_text`` (missing: empty, None)."""
    if dtype == Float64:
        return _doubles(values.to_numpy("float64", na_value=np.nan))
    encoded: dict[object, tuple[bytes, str | None]] = {}
    blobs, texts = [], []
    for value in values.tolist():
        if value not in encoded:
            encoded[value] = _one(value, dtype)
        blob, text = encoded[value]
        blobs.append(blob)
        texts.append(text)
    return blobs, texts


def _one(value: Any, dtype: object) -> tuple[bytes, str | None]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return b"", None
    if dtype == Int64:
        return Value(int64_val=int(value)).SerializeToString(), str(int(value))
    return Value(string_val=str(value)).SerializeToString(), str(value)


def _doubles(array: np.ndarray) -> tuple[list[bytes], list[str | None]]:
    packed = np.empty(len(array), dtype=_DOUBLE_VALUE)
    packed["tag"] = _DOUBLE_TAG
    packed["value"] = array
    blob = packed.tobytes()
    size = _DOUBLE_VALUE.itemsize
    missing = np.isnan(array)
    blobs = [
        b"" if gone else blob[i * size : (i + 1) * size]
        for i, gone in enumerate(missing.tolist())
    ]
    texts = [
        None if gone else repr(x)
        for x, gone in zip(array.tolist(), missing.tolist(), strict=True)
    ]
    return blobs, texts
