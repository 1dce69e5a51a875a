"""The acting identity of a command and its permission check."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bankplatform.security.policy import Action
    from bankplatform.security.runtime import WorkspaceSecurity


def authorised(
    env_or_security: str | None | WorkspaceSecurity, action: Action, resource: str
) -> WorkspaceSecurity:
    """A command's security (its context's, or the env's), activated, once the
    command's identity may do ``action`` (audited).

    Raises:
        IdentityError: No acceptable identity.
        AccessDenied: The identity may not (the denial is audited).
    """
    from bankplatform.security.runtime import (
        WorkspaceSecurity,
        activate,
        workspace_security,
    )

    security = (
        env_or_security
        if isinstance(env_or_security, WorkspaceSecurity)
        else workspace_security(env_or_security)
    )
    activate(security)
    security.enforce(action, resource)
    return security
