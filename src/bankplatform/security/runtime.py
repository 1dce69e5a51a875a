"""The security state of a process: which workspace's key service applies, who
started the work and which pipeline the current node acts for.

A Kedro context activates its env's security when it is created (``AccessHook``),
so ``kedro run``, a notebook's session and the command line all share one client
of the env's **key and audit service**. The process holds a credential, never a
key: encrypted datasets ask the service for one dataset's data key, classified
plain datasets ask it for a decision, audit records are appended by it with the
identity it proved. A node asks as its pipeline's service identity, which the
service grants only if the starter may run that pipeline.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.config import AbstractConfigLoader

from bankplatform.errors import BankplatformError
from bankplatform.manifest import load_manifest
from bankplatform.project import env_config_loader, find_project_root, resolve_env
from bankplatform.security.client import (
    RUN_CREDENTIAL_ENV_VAR,
    TOKEN_ENV_VAR,
    USER_ENV_VAR,
    KeyServiceClient,
    ServiceAuditLog,
    ServiceBundles,
    ServiceKeys,
    ServicePseudonymiser,
    ServiceTokens,
    act_for_node,
    acting_for,
    acting_pipeline,
    principal_from,
)
from bankplatform.security.policy import Action, Principal
from bankplatform.security.settings import SecuritySettings, load_security_settings

__all__ = [
    "DelegatedCaller",
    "WorkspaceSecurity",
    "act_for_node",
    "activate",
    "active_security",
    "guard_dataset",
    "open_security",
    "workspace_security",
]


@dataclass
class WorkspaceSecurity:
    """The key service client of one workspace env, and who acts through it."""

    env: str
    root: Path
    settings: SecuritySettings
    _client: KeyServiceClient | None = field(default=None, repr=False, compare=False)
    _who: dict[str, dict[str, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its open client and cached identities (a process that
        unpickles it, a ParallelRunner worker, opens its own)."""
        return {**self.__dict__, "_client": None, "_who": {}}

    def service(self) -> KeyServiceClient:
        """The client of this env's key service."""
        if self._client is None:
            self._client = KeyServiceClient(self.root, self.env, self.settings)
        return self._client

    def key_service(self) -> ServiceKeys:
        """Data keys, one dataset at a time, decided by the service."""
        return ServiceKeys(self.service())

    def tokens(self) -> ServiceTokens:
        """Token issue and revocation (the service checks ``issue_tokens``)."""
        return ServiceTokens(self.service())

    def audit_log(self) -> ServiceAuditLog:
        """The audit log, appended to and read through the service."""
        return ServiceAuditLog(self.service())

    def start_run(
        self, run_id: str, pipelines: list[str], minutes: int = 24 * 60
    ) -> str:
        """A run credential for ``pipelines`` (asked as the starter, never a service)."""
        with acting_for(""):
            content = self.service().call(
                "POST",
                "/v1/runs",
                {"run_id": run_id, "pipelines": pipelines, "minutes": minutes},
            )
        return str(content["credential"])

    def renew_run(self, credential: str, minutes: int = 24 * 60) -> None:
        """Extend a live run credential (a long-running service)."""
        with acting_for(""):
            self.service().call(
                "POST", "/v1/runs/renew", {"credential": credential, "minutes": minutes}
            )

    def end_run(self, credential: str) -> None:
        """End a run: its credential grants nothing from now on."""
        with acting_for(""):
            self.service().call("POST", "/v1/runs/end", {"credential": credential})

    def policy_status(self) -> dict[str, Any]:
        """The key service's installed policy against the workspace's ``conf/``."""
        return self.service().call("GET", "/v1/policy")

    def bundles(self) -> ServiceBundles:
        """Signed model bundles, packaged and kept by the service."""
        return ServiceBundles(self.service())

    def pseudonymiser(self) -> ServicePseudonymiser:
        """Pseudonymous tokens computed by the service."""
        return ServicePseudonymiser(self.service())

    def whoami(self) -> dict[str, Any]:
        """The service's view of the acting identity (cached per acting pipeline)."""
        pipeline = acting_pipeline()
        if pipeline not in self._who:
            self._who[pipeline] = self.service().call("GET", "/v1/whoami")
        return self._who[pipeline]

    def starter(self) -> Principal:
        """Who started the work, as the service proved it.

        Raises:
            IdentityError: A bad token, an undeclared user, or no identity at all.
        """
        if "" not in self._who:
            with acting_for(""):
                self._who[""] = self.service().call("GET", "/v1/whoami")
        return principal_from(self._who[""])

    def acting_principal(self) -> Principal:
        """The identity acting now: the node's service identity, else the starter."""
        return principal_from(self.whoami())

    def permits(self, action: Action) -> bool:
        """Whether the acting identity may ``action`` (not audited: for display)."""
        return action.value in self.whoami()["actions"]

    def pipelines(self) -> dict[str, str]:
        """Pipeline -> service identity, from the service's policy."""
        return dict(self.whoami()["pipelines"])

    def enforce(
        self, action: Action, resource: str, details: dict[str, Any] | None = None
    ) -> None:
        """Ask the service to allow ``action`` on ``resource`` (audited either way).

        Raises:
            AccessDenied: The acting identity may not.
        """
        self.service().call(
            "POST",
            "/v1/access/decide",
            {"action": action.value, "resource": resource, "details": details or {}},
        )


def open_security(
    config_loader: AbstractConfigLoader, root: Path, env: str
) -> WorkspaceSecurity:
    """The security client of an env (the socket's place comes from its config;
    every decision comes from the service's own reading of the workspace)."""
    return WorkspaceSecurity(
        env=env, root=root, settings=load_security_settings(config_loader, root, env)
    )


def workspace_security(
    env: str | None = None, project_dir: str | Path | None = None
) -> WorkspaceSecurity:
    """The security of a workspace (a notebook's or a command's).

    Args:
        env: Kedro env; defaults to ``$KEDRO_ENV`` or the manifest's.
        project_dir: The workspace; defaults to the one around the current folder.
    """
    root = find_project_root(Path(project_dir) if project_dir else None)
    chosen = resolve_env(load_manifest(root), env)
    return open_security(env_config_loader(root, chosen), root, chosen)


_active: WorkspaceSecurity | None = None


def activate(security: WorkspaceSecurity) -> None:
    """Make ``security`` the one this process's datasets and hooks use."""
    global _active  # noqa: PLW0603 - one active workspace per process, like a KedroSession
    _active = security


def active_security() -> WorkspaceSecurity:
    """The active workspace security, else the one of the workspace around the cwd."""
    if _active is None:
        activate(workspace_security())
    assert _active is not None  # noqa: S101 - set just above
    return _active


def active_key_service() -> ServiceKeys:
    """Data keys of the active workspace's key service."""
    return active_security().key_service()


def acting_principal() -> Principal:
    """The identity acting now: the current node's service, else the starter."""
    return active_security().acting_principal()


def acting_identity() -> str:
    """The acting identity's name, for records that must not fail (lineage tags)."""
    try:
        return acting_principal().name
    except BankplatformError:
        return os.environ.get(USER_ENV_VAR) or getpass.getuser()


def guard_dataset(name: str, operation: str) -> None:
    """Ask the service whether the acting identity may load (``read``) or save
    (``write``) a plain-file dataset; it decides from its own catalog entry.

    Raises:
        AccessDenied: Not classified pii/confidential in the workspace catalog,
            or not permitted (the decision is audited by the service).
    """
    active_security().service().call(
        "POST", "/v1/datasets/access", {"dataset": name, "operation": operation}
    )


@dataclass(frozen=True)
class DelegatedCaller:
    """What a task in another process (a Ray worker, maybe on another node) needs to
    ask this workspace's key service as the node that handed it the work: the
    workspace, the env, the acting pipeline and the caller's own credential.

    The worker holds a credential, never a key: each file it opens is its own key
    request, decided and audited by the service for the same identity as the node.
    The token travels inside the task's arguments (Ray's channels are TLS and token
    authenticated in prod); it never appears in a repr or a log.
    """

    root: Path
    env: str
    pipeline: str
    user: str | None
    token: str | None = field(default=None, repr=False)
    run_credential: str | None = field(default=None, repr=False)

    @classmethod
    def of_this_process(cls) -> DelegatedCaller:
        """The active workspace, as the current node asks."""
        security = active_security()
        return cls(
            root=security.root,
            env=security.env,
            pipeline=acting_pipeline(),
            user=os.environ.get(USER_ENV_VAR),
            token=os.environ.get(TOKEN_ENV_VAR),
            run_credential=os.environ.get(RUN_CREDENTIAL_ENV_VAR),
        )

    @contextmanager
    def acting(self) -> Iterator[None]:
        """Inside the block this process asks this workspace's service as the caller
        (the worker's own credential variables are put back afterwards)."""
        global _active  # noqa: PLW0603 - a worker process acts for one task at a time
        carried = (TOKEN_ENV_VAR, USER_ENV_VAR, RUN_CREDENTIAL_ENV_VAR)
        previous = (_active, {name: os.environ.get(name) for name in carried})
        where = (self.root, self.env)
        if where not in _delegated:  # one client per worker process and workspace
            _delegated[where] = open_security(
                env_config_loader(self.root, self.env), self.root, self.env
            )
        _active = _delegated[where]
        for name, value in (
            (TOKEN_ENV_VAR, self.token),
            (USER_ENV_VAR, self.user),
            (RUN_CREDENTIAL_ENV_VAR, self.run_credential),
        ):
            _set_or_remove(name, value)
        try:
            with acting_for(self.pipeline):
                yield
        finally:
            _active = previous[0]
            for name, value in previous[1].items():
                _set_or_remove(name, value)


_delegated: dict[tuple[Path, str], WorkspaceSecurity] = {}


@contextmanager
def granted_run(
    security: WorkspaceSecurity, pipelines: list[str], run_id: str = ""
) -> Iterator[str]:
    """Inside the block this process (and the processes it starts) holds a run
    credential for ``pipelines``; it is ended afterwards.

    Raises:
        AccessDenied: The starter may not run one of them (audited).
    """
    credential = security.start_run(run_id or f"adhoc-{uuid.uuid4().hex}", pipelines)
    previous = os.environ.get(RUN_CREDENTIAL_ENV_VAR)
    os.environ[RUN_CREDENTIAL_ENV_VAR] = credential
    try:
        yield credential
    finally:
        _set_or_remove(RUN_CREDENTIAL_ENV_VAR, previous)
        with suppress(BankplatformError):  # an ended service ends its grants too
            security.end_run(credential)


@contextmanager
def acting_in_run(pipeline: str) -> Iterator[None]:
    """Act as ``pipeline``'s service inside the block, under a run credential the
    key service grants for it now (``data generate``, an import, a test's set-up)."""
    with granted_run(active_security(), [pipeline]), acting_for(pipeline):
        yield


def _set_or_remove(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
