"""The acting identity of a command and its permission check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    security.enforce(security.starter(), action, resource)
    return security


@contextmanager
def authorised_after(
    env: str | None, action: Action, resource: str
) -> Iterator[WorkspaceSecurity]:
    """Like ``authorised``, but an allowed check is audited only after the body
    succeeded (a denial is audited at once and raises).

    For a command whose own work decides whether the log may be written to
    (``audit verify``).
    """
    from bankplatform.security.runtime import activate, workspace_security

    security = workspace_security(env)
    activate(security)
    starter = security.starter()
    if not security.policy.permits(starter, action):
        security.enforce(starter, action, resource)  # audits the denial, raises
    yield security
    security.enforce(starter, action, resource)
