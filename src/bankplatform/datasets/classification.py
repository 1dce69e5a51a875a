"""What a classified dataset shows as its preview in kedro-viz's metadata panel:
its zone and classification, never its rows (a built site is a static file a
reviewer can copy anywhere)."""

from __future__ import annotations

import json
from typing import Any, NewType

# kedro-viz picks the preview widget by this return annotation's name.
JSONPreview = NewType("JSONPreview", str)


class ClassificationPreview:
    """Mixin for the project's datasets: ``preview()`` is the catalog metadata's
    zone and classification."""

    def preview(self) -> JSONPreview:
        """Zone and classification from the catalog entry; no data is read."""
        metadata: dict[str, Any] = dict(getattr(self, "metadata", None) or {})
        return JSONPreview(
            json.dumps(
                {
                    "zone": metadata.get("zone", "-"),
                    "classification": metadata.get("classification", "-"),
                    "rows": "not previewed: read through the key service only",
                }
            )
        )
