"""What a feature service serves, read off its Feast definition."""

from __future__ import annotations

from feast import FeatureService


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
