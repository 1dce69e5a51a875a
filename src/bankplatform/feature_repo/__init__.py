"""The Feast feature repository of the credit default model (definitions only).

``definitions`` holds module-level Feast objects named by role, as a Feast repo
does; ``FEATURE_REPOSITORY`` lists what ``feast apply`` registers. The store's
configuration (``feature_store.yaml``) is generated per Kedro env from the
``feature_store`` catalog entry (see ``bankplatform.datasets.FeatureStoreDataset``).
"""

from bankplatform.feature_repo.definitions import (
    FEATURE_REPOSITORY,
    FEATURE_SERVICES,
    credit_default_v1,
)

__all__ = ["FEATURE_REPOSITORY", "FEATURE_SERVICES", "credit_default_v1"]
