"""The acting identity of a command and its permission check."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bankplatform.security.policy import Action
    from bankplatform.security.runtime import WorkspaceSecurity


def authorised(env: str | None, action: Action, resource: str) -> WorkspaceSecurity:
    """The env's security, once the command's identity may do ``action`` (audited).

    Raises:
        IdentityError: No acceptable identity.
        AccessDenied: The identity may not (the denial is audited).
    """
    from bankplatform.security.runtime import activate, workspace_security

    security = workspace_security(env)
    activate(security)
    security.enforce(action, resource)
    return security
