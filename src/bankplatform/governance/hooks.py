"""``GovernanceHook``: the governance settings are validated when a Kedro context
is created, so a typo in ``governance.yml`` stops ``kedro run`` (or a notebook's
session) before the first node, not halfway through the evaluation."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from bankplatform.governance.settings import GovernanceSettings


class GovernanceHook:
    """Validates ``params:governance``."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Validate the env's governance settings.

        Raises:
            pydantic.ValidationError: A missing, mistyped or unknown field.
        """
        GovernanceSettings.model_validate(context.params.get("governance", {}))
