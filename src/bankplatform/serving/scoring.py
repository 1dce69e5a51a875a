"""One application in, one scored decision out: online features from Feast, the
served version's probability of default and its reason codes.

Reason codes are xgboost's own per-feature contributions (log-odds) for this
applicant, the largest that pushed the probability of default up first: what a
declined applicant is told (EU AI Act Art 86, GDPR Art 22, adverse-action
notices). The probability is the logistic of the contributions' sum, so one
prediction gives both.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type

from bankplatform.errors import BankplatformError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from feast import FeatureStore

    from bankplatform.serving.models import ServedModel
    from bankplatform.serving.schemas import Application

CUSTOMER_KEY = "customer_token"  # the customer entity's join key
# Where the request's own fields go among the model's inputs.
APPLICATION_FIELDS = {
    "loan_amount": "amount",
    "term_months": "term_months",
    "purpose": "purpose",
}


class UnknownCustomer(BankplatformError):
    """The online store holds no features for this customer token."""


class ModelFault(BankplatformError):
    """A served version raised or gave no usable score for one application."""


@dataclass(frozen=True)
class CustomerFeatures:
    """A customer's online features and the time they describe (the oldest of the
    views' event times: a batch snapshot's, or the streamed booking's)."""

    values: dict[str, Any]
    as_of: datetime | None


@dataclass(frozen=True)
class Scored:
    """A version's verdict on one application."""

    score: float
    reason_codes: list[dict[str, Any]]


class OnlineFeatures:
    """Online feature lookups of one feature service's customer features.

    Reads through the Feast store's own online store (``OnlineStore.online_read``,
    one read per feature view, values converted by Feast's type map), with the
    feature views resolved once: the values ``get_online_features`` returns
    (tested equal), without its per-call request planning and response
    building, which were two thirds of a lookup's time here.
    """

    def __init__(self, store: FeatureStore, refs: Sequence[str]) -> None:
        wanted = [r for r in refs if r.partition(":")[2] not in APPLICATION_FIELDS]
        views: dict[str, list[str]] = {}
        for ref in wanted:
            view, _, feature = ref.partition(":")
            views.setdefault(view, []).append(feature)
        self._config = store.config
        self._online = store._get_provider().online_store
        self._views = [
            (store.get_feature_view(name), names) for name, names in views.items()
        ]
        self._names = [ref.partition(":")[2] for ref in wanted]

    def of(self, customer_token: str) -> CustomerFeatures:
        """The customer's latest feature values and their as-of time.

        Raises:
            UnknownCustomer: No feature of any view is known for the token.
        """
        key = EntityKey(
            join_keys=[CUSTOMER_KEY], entity_values=[Value(string_val=customer_token)]
        )
        values: dict[str, Any] = {}
        times: list[datetime] = []
        for view, names in self._views:
            ((written, stored),) = self._online.online_read(
                self._config, view, [key], names
            )
            if written is not None:
                times.append(written)
            for name in names:
                found = (stored or {}).get(name)
                values[name] = (
                    None if found is None else feast_value_type_to_python_type(found)
                )
        if all(value is None for value in values.values()):
            msg = "unknown customer: no features in the online store for this customer token"
            raise UnknownCustomer(msg)
        return CustomerFeatures(
            {name: values[name] for name in self._names},
            _utc(min(times)) if times else None,
        )


def _utc(moment: datetime) -> datetime:
    # Feast's SQLite store gives naive UTC times, Redis aware ones.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def model_input(features: dict[str, Any], application: Application) -> dict[str, Any]:
    """The model's inputs: the customer's features plus the application's terms."""
    row = dict(features)
    for column, field in APPLICATION_FIELDS.items():
        row[column] = getattr(application, field)
    return row


def input_sha256(row: dict[str, Any]) -> str:
    """Hash of the exact inputs a decision was made on (canonical JSON)."""
    text = orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()


def score_application(
    served: ServedModel, row: dict[str, Any], reason_count: int
) -> Scored:
    """Probability of default and reason codes from one version.

    Whatever the version does (raise anything, ``sys.exit`` included, return the
    wrong shape, NaN) is a ``ModelFault``: a served version is code the service
    does not trust completely, and its failure is counted, never a client's error.

    Raises:
        ModelFault: The version failed, or its output is not one probability with
            one contribution per feature.
    """
    try:
        values = _contributions(served, row)
        expected = len(served.features) + 1  # one per feature and the bias
        if values.shape != (expected,):
            msg = f"version {served.version} gave {values.size} outputs, expected {expected}"
            raise ModelFault(msg)
        margin = float(values.sum())
        score = 1.0 / (1.0 + math.exp(-margin)) if math.isfinite(margin) else math.nan
        if not 0.0 <= score <= 1.0:
            msg = f"version {served.version} gave no probability ({score})"
            raise ModelFault(msg)
        return Scored(
            score, reason_codes(served.features, values[:-1], row, reason_count)
        )
    except ModelFault:
        raise
    except BaseException as error:  # untrusted code: SystemExit too
        msg = f"version {served.version} failed: {type(error).__name__}"
        raise ModelFault(msg) from None


def _contributions(served: ServedModel, row: dict[str, Any]) -> np.ndarray:
    model = served.model
    if hasattr(model, "contributions_of"):
        return np.asarray(model.contributions_of([row]), dtype="float64")[0]
    # Versions registered before the one-row path: the pyfunc's own predict.
    frame = pd.DataFrame([{name: row.get(name) for name in served.features}])
    contributions = model.predict(None, frame, {"output": "contributions"})
    return np.asarray(contributions, dtype="float64")[0]


def reason_codes(
    features: list[str], contributions: np.ndarray, row: dict[str, Any], count: int
) -> list[dict[str, Any]]:
    """The ``count`` features that raised the probability of default most."""
    order = np.argsort(-contributions, kind="stable")
    codes = []
    for index in order[:count]:
        contribution = float(contributions[index])
        if contribution <= 0:
            break
        name = features[index]
        codes.append(
            {
                "feature": name,
                "value": _plain(row.get(name)),
                "contribution": round(contribution, 6),
            }
        )
    return codes


def _plain(value: Any) -> float | str | None:
    if value is None or isinstance(value, str):
        return value
    number = float(value)
    return number if math.isfinite(number) else None
