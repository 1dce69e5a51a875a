"""The workspace manifest ``.kedro.yml``: who owns this model and under which rules.

Kedro 1.x ignores ``.kedro.yml``; bankplatform reads it. Every field is
validated (``extra="forbid"``), so a typo is an error naming the field, not a
silent default.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bankplatform.errors import ManifestError

MANIFEST_FILE = ".kedro.yml"

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$")]


class ModelRiskTier(StrEnum):
    """Materiality tier (SR 26-2): sets validation depth and review frequency."""

    TIER_1 = "tier_1"
    TIER_2 = "tier_2"
    TIER_3 = "tier_3"


class Regulation(StrEnum):
    """Texts a workspace can declare itself in scope of (see REGULATORY.md)."""

    SR_26_2 = "SR 26-2"
    OCC_2026_13 = "OCC Bulletin 2026-13"
    EU_AI_ACT_CREDIT = "EU AI Act Annex III 5(b)"
    GDPR = "GDPR"
    DORA = "DORA"
    EBA_LOAN_ORIGINATION = "EBA/GL/2020/06"


class WorkspaceManifest(BaseModel):
    """The validated content of ``.kedro.yml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace_id: Slug
    model_name: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{1,99}$")
    ]
    owning_squad: Slug
    model_risk_tier: ModelRiskTier
    intended_use: Annotated[
        str, StringConstraints(min_length=20, strip_whitespace=True)
    ]
    regulatory_scope: Annotated[list[Regulation], Field(min_length=1)]
    default_kedro_env: Annotated[
        str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")
    ] = "local"
    # A production workspace: no env may accept an unproven user, and
    # `data generate` is refused, whatever --env or $KEDRO_ENV say.
    production: bool = False


def load_manifest(project_root: Path) -> WorkspaceManifest:
    """Read and validate ``.kedro.yml`` in ``project_root``.

    Args:
        project_root: The workspace folder.

    Returns:
        The validated manifest.

    Raises:
        ManifestError: Missing file, invalid YAML or an invalid field; the
            message is one line and names the field.
    """
    path = project_root / MANIFEST_FILE
    if not path.is_file():
        msg = f"{path}: workspace manifest not found"
        raise ManifestError(msg)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        msg = f"{path}: not valid YAML{where}"
        raise ManifestError(msg) from None
    if not isinstance(content, dict):
        msg = f"{path}: expected a mapping of fields, got {type(content).__name__}"
        raise ManifestError(msg)
    try:
        return WorkspaceManifest.model_validate(content)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].splitlines()[0]
        count = error.error_count()
        more = f" (and {count - 1} more)" if count > 1 else ""
        msg = f"{path}: field {field}: {message}{more}"
        raise ManifestError(msg) from None
