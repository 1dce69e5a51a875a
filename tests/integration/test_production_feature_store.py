"""Feast on the production stores for real: the online store on a Redis that
speaks TLS only, the registry on PostgreSQL (verify-full TLS); `kedro run
--pipeline features` writes both, and the online features equal the embedded
default's (SQLite) for the same data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bankplatform.datasets import FeatureStoreDataset
from bankplatform.feature_repo.services import service_features
from bankplatform.features.store import online_customer_features
from tests.conftest import copy_workspace, read_encrypted, run_command
from tests.servers import PostgresTLS, RedisTLS, start_postgres, start_redis

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


@dataclass
class Stores:
    root: Path
    postgres: PostgresTLS
    redis: RedisTLS
    entry: dict[str, Any]
    credentials: dict[str, str]
    run_output: str


@pytest.fixture(scope="module")
def production_stores(
    tmp_path_factory: pytest.TempPathFactory, ingested_workspace: Path
) -> Iterator[Stores]:
    import secrets

    root = tmp_path_factory.mktemp("feast_prod") / "workspace"
    copy_workspace(ingested_workspace, root)
    made = run_command(["bankplatform", "tls", "init", "--env", "test"], root)
    assert made.returncode == 0, made.stderr
    tls = root / ".bankplatform-tls"
    postgres = start_postgres(
        tls / "postgres.crt", tls / "postgres.key", tls / "ca.crt"
    )
    store = start_redis(
        tls / "redis.crt", tls / "redis.key", tls / "ca.crt", root / "redis"
    )
    try:
        registry_secret = secrets.token_urlsafe(18)
        postgres.execute(
            f"CREATE ROLE feast LOGIN PASSWORD '{registry_secret}'",
            "CREATE DATABASE feast OWNER feast",
        )
        base = yaml.safe_load((root / "conf/base/catalog.yml").read_text())[
            "feature_store"
        ]
        entry = {
            **base,
            "online_store": {
                "type": "redis",
                "connection_string": (
                    f"127.0.0.1:{store.port},ssl=true,ssl_cert_reqs=required,"
                    f"ssl_check_hostname=true,ssl_ca_certs={tls / 'ca.crt'}"
                ),
            },
            "registry": {
                "registry_type": "sql",
                "path": (
                    f"postgresql+psycopg://feast@127.0.0.1:{postgres.port}/feast"
                    f"?sslmode=verify-full&sslrootcert={tls / 'ca.crt'}"
                ),
                "cache_ttl_seconds": 60,
            },
            "credentials": "feast_stores",
        }
        (root / "conf/test/catalog.yml").write_text(
            yaml.safe_dump({"feature_store": entry})
        )
        credentials = {
            "online_store_password": store.password,
            "registry_password": registry_secret,
        }
        (root / "conf/local").mkdir(parents=True, exist_ok=True)
        (root / "conf/local/credentials.yml").write_text(
            yaml.safe_dump({"feast_stores": credentials})
        )
        done = run_command(
            ["kedro", "run", "--pipeline", "features", "--env", "test"], root
        )
        assert done.returncode == 0, done.stderr[-3000:]
        yield Stores(
            root, postgres, store, entry, credentials, done.stdout + done.stderr
        )
    finally:
        store.stop()
        postgres.stop()


def _feast(
    folder: Path, entry: dict[str, Any], credentials: dict[str, str] | None
) -> Any:
    """A Feast store opened the way the dataset opens it (no security hooks here)."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    options = {
        k: v for k, v in entry.items() if k not in {"type", "metadata", "credentials"}
    }
    dataset = FeatureStoreDataset(
        **{**options, "filepath": str(folder)}, credentials=credentials
    )
    return FeatureStore(
        config=RepoConfig(repo_path=folder, **dataset.repo_settings(True))
    )


def test_the_stores_take_verified_tls_only_and_hold_the_run(
    production_stores: Stores,
) -> None:
    stores = production_stores
    ca = str(stores.root / ".bankplatform-tls/ca.crt")
    verified = redis.Redis(
        host="127.0.0.1",
        port=stores.redis.port,
        password=stores.redis.password,
        ssl=True,
        ssl_ca_certs=ca,
    )
    assert verified.dbsize() > 100  # materialised customers
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="127.0.0.1", port=stores.redis.port, socket_timeout=5).ping()
    with pytest.raises(redis.exceptions.ConnectionError):  # public CAs only
        redis.Redis(
            host="127.0.0.1",
            port=stores.redis.port,
            ssl=True,
            ssl_ca_certs="/etc/ssl/certs/ca-certificates.crt",
            socket_timeout=5,
        ).ping()
    # The registry is rows of PostgreSQL.
    connection = stores.postgres.connect("feast")
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SELECT feature_view_name FROM feature_views ORDER BY 1")
        views = [row[0] for row in cursor.fetchall()]
    connection.close()  # type: ignore[attr-defined]
    assert views == [
        "customer_balances",
        "customer_delinquency",
        "customer_profile",
        "customer_transactions",
        "loan_application_terms",
    ]
    # The file written for Feast's CLI holds no password.
    written = (stores.root / "data/04_feature/feature_store.yaml").read_text()
    assert "type: redis" in written
    assert not any(secret in written for secret in stores.credentials.values())
    assert not any(
        secret in stores.run_output for secret in stores.credentials.values()
    )


def test_redis_serves_what_the_embedded_store_serves(
    production_stores: Stores, featured_workspace: Path
) -> None:
    """Same data, same pipeline: the same online features from Redis as from SQLite."""
    stores = production_stores
    production = _feast(
        stores.root / "data/04_feature", stores.entry, stores.credentials
    )
    base = yaml.safe_load((stores.root / "conf/base/catalog.yml").read_text())[
        "feature_store"
    ]
    embedded = _feast(featured_workspace / "data/04_feature", base, None)
    customers = read_encrypted(
        featured_workspace / "data/03_primary/customers.parquet.enc",
        "customers_primary",
    )
    tokens = sorted(customers["customer_token"])[:25]
    service = production.get_feature_service("credit_default_v1")
    refs = [
        r for r in service_features(service) if not r.startswith("loan_application")
    ]
    from_redis = online_customer_features(production, tokens, refs).set_index(
        "customer_token"
    )
    from_sqlite = online_customer_features(embedded, tokens, refs).set_index(
        "customer_token"
    )
    assert len(refs) >= 20
    for token in tokens:
        for ref in refs:
            name = ref.partition(":")[2]
            left, right = from_redis.loc[token, name], from_sqlite.loc[token, name]
            if isinstance(right, float) and math.isnan(right):
                assert left is None or math.isnan(left), (token, name)
            else:
                assert left == right, (token, name)
