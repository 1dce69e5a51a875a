"""Roles and permitted actions (``access:`` in ``conf/<env>/security.yml``).

Shaped like Feast's permission model: an enum of actions, a policy that maps
roles to actions and identities to roles, and one enforcement function that
denies by default and writes every decision it is given a log for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, model_validator

from bankplatform.errors import BankplatformError


class Action(StrEnum):
    """Everything a role can be permitted to do."""

    RUN_PIPELINE = "run_pipeline"
    GENERATE_SYNTHETIC_DATA = "generate_synthetic_data"
    READ_PII = "read_pii"
    WRITE_PII = "write_pii"
    READ_CONFIDENTIAL = "read_confidential"
    WRITE_CONFIDENTIAL = "write_confidential"
    REGISTER_MODEL = "register_model"
    EVALUATE_MODEL = "evaluate_model"
    APPROVE_MODEL = "approve_model"
    REJECT_MODEL = "reject_model"
    PROMOTE_MODEL = "promote_model"
    ROLLBACK_MODEL = "rollback_model"
    DECOMMISSION_MODEL = "decommission_model"
    MANAGE_KEYS = "manage_keys"
    ISSUE_TOKENS = "issue_tokens"
    MANAGE_TRAFFIC = "manage_traffic"
    PSEUDONYMISE = "pseudonymise"
    SCORE = "score"
    VERIFY_TOKENS = "verify_tokens"
    REVIEW_DECISIONS = "review_decisions"
    APPEAL_DECISION = "appeal_decision"
    MONITOR_MODEL = "monitor_model"
    CLOSE_REVIEW = "close_review"
    READ_AUDIT_LOG = "read_audit_log"
    READ_REPORTS = "read_reports"


class AccessDenied(BankplatformError):
    """The acting identity lacks the permission; the message says which."""


class IdentityError(BankplatformError):
    """No acceptable identity: unknown user, bad token, or none where one is needed."""


@dataclass(frozen=True)
class Principal:
    """Who acts: a person or a service, with roles; a service acts on someone's behalf.

    Attributes:
        name: User name, token subject or service identity.
        roles: The roles held.
        source: ``user`` (``$BANKPLATFORM_USER`` or the local default),
            ``token`` or ``service``.
        on_behalf_of: For a service: who started it.
    """

    name: str
    roles: frozenset[str]
    source: str
    on_behalf_of: str | None = None


class PipelineAccess(BaseModel):
    """Who may start a pipeline, and the service identity its nodes act as."""

    model_config = ConfigDict(extra="forbid")

    service: str
    run_by: list[str]


class AccessPolicy(BaseModel):
    """``access:`` in ``security.yml``.

    Attributes:
        roles: Role -> permitted actions.
        users: User (a person or a scheduler) -> roles.
        services: Service identity -> roles. Service roles are never issued to users.
        pipelines: Pipeline -> its service identity and the roles that may start it.
        local_default_user: Who acts in a developer env when
            ``$BANKPLATFORM_USER`` is not set.
    """

    model_config = ConfigDict(extra="forbid")

    roles: dict[str, frozenset[Action]]
    users: dict[str, list[str]] = {}
    services: dict[str, list[str]] = {}
    pipelines: dict[str, PipelineAccess] = {}
    local_default_user: str | None = None

    @model_validator(mode="after")
    def _references_exist(self) -> Self:
        for kind, members in (("user", self.users), ("service", self.services)):
            for member, roles in members.items():
                unknown = sorted(set(roles) - set(self.roles))
                if unknown:
                    msg = f"{kind} {member} has unknown role(s) {', '.join(unknown)}"
                    raise ValueError(msg)
        for user, roles in self.users.items():
            held = sorted(set(roles) & self.service_roles())
            if held:
                msg = f"user {user} holds service role(s) {', '.join(held)}"
                raise ValueError(msg)
        for pipeline, access in self.pipelines.items():
            if access.service not in self.services:
                msg = f"pipeline {pipeline} runs as unknown service {access.service}"
                raise ValueError(msg)
            unknown = sorted(set(access.run_by) - set(self.roles))
            if unknown:
                msg = f"pipeline {pipeline} is run by unknown role(s) {', '.join(unknown)}"
                raise ValueError(msg)
        if self.local_default_user and self.local_default_user not in self.users:
            msg = f"local_default_user {self.local_default_user} is not in users"
            raise ValueError(msg)
        return self

    def service_roles(self) -> set[str]:
        """Roles held by service identities: never issued to a person."""
        return {role for roles in self.services.values() for role in roles}

    def permits(self, principal: Principal, action: Action) -> bool:
        """Whether any of the principal's roles permits ``action`` (unknown roles: none)."""
        return any(action in self.roles.get(role, ()) for role in principal.roles)

    def may_run(self, principal: Principal, pipeline: str) -> bool:
        """``run_pipeline``, and for a declared pipeline a role in its ``run_by``."""
        if not self.permits(principal, Action.RUN_PIPELINE):
            return False
        access = self.pipelines.get(pipeline)
        return access is None or bool(principal.roles & set(access.run_by))

    def require_run(self, principal: Principal, pipeline: str) -> None:
        """Raise unless ``principal`` may run ``pipeline`` (``may_run``).

        Raises:
            AccessDenied: Naming the principal, its roles and the pipeline.
        """
        if not self.may_run(principal, pipeline):
            roles = ", ".join(sorted(principal.roles)) or "none"
            msg = f"access denied: {principal.name} (roles: {roles}) may not run pipeline {pipeline}"
            raise AccessDenied(msg)

    def user(self, name: str) -> Principal:
        """A declared user with their roles."""
        if name not in self.users:
            msg = f"user {name!r} is not declared in security.yml (access.users)"
            raise IdentityError(msg)
        return Principal(name, frozenset(self.users[name]), "user")

    def delegate(self, starter: Principal, pipeline: str) -> Principal:
        """The service identity of ``pipeline`` acting on the starter's behalf.

        Raises:
            AccessDenied: The starter may not run that pipeline.
            IdentityError: No such pipeline in the policy.
        """
        access = self.pipelines.get(pipeline)
        if access is None:
            msg = f"pipeline {pipeline!r} is not declared in security.yml (access.pipelines)"
            raise IdentityError(msg)
        self.require_run(starter, pipeline)
        return Principal(
            access.service,
            frozenset(self.services[access.service]),
            "service",
            starter.name,
        )
