"""The key service's one enforcement function: deny by default, every decision
audited in its own log (callers ask the service; they never decide)."""

from __future__ import annotations

from typing import Any

from bankplatform.keyservice.audit_log import AuditLog
from bankplatform.security.policy import AccessDenied, AccessPolicy, Action, Principal


def enforce(
    policy: AccessPolicy,
    principal: Principal,
    action: Action,
    resource: str,
    log: AuditLog | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Allow ``action`` on ``resource`` only if a role of ``principal`` permits it.

    Deny by default. With a ``log``, the decision is audited either way; a
    denial is written before it is raised.

    Raises:
        AccessDenied: No role of the principal permits the action.
    """
    allowed = policy.permits(principal, action)
    if log is not None:
        log.append(
            actor=principal.name,
            on_behalf_of=principal.on_behalf_of,
            action=action.value,
            resource=resource,
            outcome="allowed" if allowed else "denied",
            details={"roles": sorted(principal.roles), **(details or {})},
        )
    if not allowed:
        roles = ", ".join(sorted(principal.roles)) or "none"
        msg = f"access denied: {principal.name} (roles: {roles}) may not {action.value} on {resource}"
        raise AccessDenied(msg)
