"""What the key and audit service decides: who is asking, and what they may have.

``KeyAuthority`` is the only holder of the master key, the keyring, the signing
key, the pseudonymisation key, the access policy and the audit log. Every
decision is taken from **its own** reading of the workspace's config
(``conf/base`` and ``conf/<env>``: never the git-ignored ``conf/local``, a client's
``--conf-source``, catalog override or metadata) and stamped with the identity
proven by the caller's credential, never with a name the caller sends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bankplatform.errors import BankplatformError
from bankplatform.governance.audit_facts import fold_version_facts
from bankplatform.keyservice.audit_log import (
    AuditLog,
    CarriedHead,
    FileWitness,
    MlflowWitness,
    Witness,
)
from bankplatform.keyservice.audit_store import PostgresAuditStore
from bankplatform.keyservice.bundles import (
    BundleStore,
    PackageRequest,
    governance_problem,
    provenance,
    request_problem,
)
from bankplatform.keyservice.decisions import enforce
from bankplatform.keyservice.local_kms import open_keyring
from bankplatform.keyservice.policy_store import (
    INSTALL_RECORD,
    PolicyStoreError,
    differences,
    install,
    read_installed,
    workspace_policy,
)
from bankplatform.keyservice.pseudonyms import Pseudonymiser
from bankplatform.keyservice.tokens import TokenService
from bankplatform.lineage.settings import load_settings
from bankplatform.manifest import load_manifest
from bankplatform.project import env_config_loader
from bankplatform.security.audit import Outcome, Verdict
from bankplatform.security.envelope import key_context
from bankplatform.security.policy import (
    AccessDenied,
    AccessPolicy,
    Action,
    IdentityError,
    Principal,
)
from bankplatform.security.pseudonyms import IdentifierKind
from bankplatform.security.settings import (
    SecuritySettings,
    load_security_settings,
)

_DATASET_ACTIONS = {
    "pii": (Action.READ_PII, Action.WRITE_PII),
    "confidential": (Action.READ_CONFIDENTIAL, Action.WRITE_CONFIDENTIAL),
}
# Records that state a governed fact, and the action their writer must hold.
_GOVERNED_RECORDS = {
    "model.register": Action.REGISTER_MODEL,
    "model.evaluate": Action.EVALUATE_MODEL,
    "model.approve": Action.APPROVE_MODEL,
    "model.reject": Action.REJECT_MODEL,
    "model.promote": Action.PROMOTE_MODEL,
    "model.rollback": Action.ROLLBACK_MODEL,
    "model.decommission": Action.DECOMMISSION_MODEL,
    "monitoring.verdict": Action.MONITOR_MODEL,
    "monitoring.action": Action.MONITOR_MODEL,
    "review.open": Action.MONITOR_MODEL,
    "review.close": Action.CLOSE_REVIEW,
}
REGISTER_RECORD = "model.register"
PACKAGE_RECORD = "model.package"
# Lifecycle records that must name a bundle this service signed for the version.
_BUNDLE_RECORDS = ("model.approve", "model.promote")
# The pipeline whose service identity alone registers a model version.
TRAINING_PIPELINE = "training"
# Records the scoring service writes (requests, releases, oversight): only an
# identity that verifies tokens, i.e. the scoring service, writes them.
_SCORING_RECORDS = ("scoring.", Action.VERIFY_TOKENS)
# Resources whose records a holder of read_reports may read.
_REPORT_RESOURCES = ("model:", "request:", "monitoring:", "review:")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
_RESOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+=-]{0,299}$")
MAX_PSEUDONYM_VALUES = 2_000_000
MAX_RUN_MINUTES = 24 * 60  # a longer run (a scoring service) renews its grant
PRIVATE_ENV = "local"  # git-ignored: each person's own overrides


class BadRequest(BankplatformError):
    """A request the service cannot act on (a malformed name, a wrong size)."""


@dataclass(frozen=True)
class Credential:
    """What a caller presented: ``Authorization`` and, with a local session, a user;
    to act as a pipeline's service, the pipeline and the run credential granted
    when the run started."""

    authorization: str
    user: str = ""
    pipeline: str = ""
    run: str = ""


@dataclass(frozen=True)
class RunGrant:
    """A run's right to act as its pipelines' service identities.

    Attributes:
        run_id: The run (a Kedro session id, a scoring service's start).
        pipelines: The declared pipelines it may act for.
        starter: Who started it (the identity proven when it was granted).
        expires: The Unix time after which it grants nothing.
    """

    run_id: str
    pipelines: frozenset[str]
    starter: str
    expires: float


class KeyAuthority:
    """The key service's state and decisions for one workspace env."""

    def __init__(self, root: Path, env: str) -> None:
        # Its own reading of the workspace: conf/base and conf/<env>, never the
        # git-ignored conf/local (the `local` env's service reads base alone).
        loader = env_config_loader(root, "base" if env == PRIVATE_ENV else env)
        self.root, self.env = root, env
        self.settings: SecuritySettings = load_security_settings(loader, root, env)
        self.production = (
            load_manifest(root).production or self.settings.trust_domain == "production"
        )
        self.keyring = open_keyring(self.settings)
        self.keyring.check_env(self.settings.trust_domain)
        witnesses: list[Witness] = [FileWitness(self.settings.audit_witness)]
        if self.settings.audit_witness_mlflow:
            witnesses.append(MlflowWitness(load_settings(loader, root)[1]))
        self.audit = AuditLog(
            self._audit_store(),
            self.keyring,
            self.settings.audit_checkpoint_every,
            tuple(witnesses),
        )
        # The policy and classifications are the service's own installed copy.
        self.policy_file = self.settings.keyring.parent / "policy" / f"{env}.json"
        self._policy_stamp: tuple[int, int, int] | None = None
        document = read_installed(self.policy_file)
        if document is None:  # first start: installed from the workspace, audited
            document = workspace_policy(loader, root)
            install(self.policy_file, document)
            self.audit.append(
                actor="keyservice",
                action=INSTALL_RECORD,
                resource=f"policy:{env}",
                outcome="allowed",
                details={"sha256": document.sha256, "initial": True},
            )
        self.policy: AccessPolicy = AccessPolicy.model_validate(document.access)
        self._catalog = _catalog_resolver(document.catalog)
        self._policy_stamp = _stamp(self.policy_file)
        self.tokens = TokenService(
            self.keyring,
            self.policy,
            self.settings.revocation_list,
            self.settings.token_issuer,
            self.settings.token_audience,
            timedelta(minutes=self.settings.token_max_ttl_minutes),
        )
        self.session_secret = secrets.token_urlsafe(32)
        # Live run credentials (their sha256), kept in the service's folder so a
        # restarted service (an idle stop, an upgrade) honours them.
        self._runs_file = self.settings.keyring.parent / f"runs-{env}.json"
        self._runs: dict[str, RunGrant] = _load_runs(self._runs_file)
        self._pseudonymiser: Pseudonymiser | None = None
        self._last_append = 0.0
        self._lock = threading.Lock()
        self._register_lock = threading.Lock()
        self.bundles = BundleStore(self.settings.bundle_store, self.keyring)

    def refresh_policy(self) -> None:
        """Take up a newly installed policy (``keys policy --install``): one stat
        per request; the workspace's ``conf/`` is never read here."""
        stamp = _stamp(self.policy_file)
        if stamp == self._policy_stamp:
            return
        with self._lock:
            document = read_installed(self.policy_file)
            if document is None:
                msg = f"the installed policy {self.policy_file} is gone: reinstall it with `bankplatform keys policy --install`"
                raise PolicyStoreError(msg)
            self.policy = AccessPolicy.model_validate(document.access)
            self._catalog = _catalog_resolver(document.catalog)
            self.tokens.policy = self.policy
            self._policy_stamp = stamp

    def policy_status(self) -> dict[str, Any]:
        """The installed policy's hash, the workspace's, and what installing the
        workspace's would change."""
        installed = read_installed(self.policy_file)
        loader = env_config_loader(
            self.root, "base" if self.env == PRIVATE_ENV else self.env
        )
        proposed = workspace_policy(loader, self.root)
        return {
            "installed_sha256": installed.sha256 if installed else "",
            "workspace_sha256": proposed.sha256,
            "differences": differences(installed, proposed) if installed else [],
        }

    def _audit_store(self) -> Path | PostgresAuditStore:
        """The audit log's file, or its PostgreSQL store when ``audit_store`` is set
        (one log per workspace and env in a shared database)."""
        if not self.settings.audit_store:
            return self.settings.audit_log
        return PostgresAuditStore(
            self.settings.audit_store,
            log=f"{self.env}@{self.root.resolve()}",
            password=self.settings.audit_store_password(),
        )

    # Identity -------------------------------------------------------------

    @property
    def local_sessions(self) -> bool:
        """Whether an unproven user name is accepted (a developer's own workstation)."""
        return not self.production

    def write_session_file(self) -> Path:
        """The local session credential, readable by the service's OS user only."""
        path = self.settings.session_file
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(self.session_secret)
        temporary.replace(path)
        return path

    def authenticate(self, credential: Credential) -> Principal:
        """The identity a credential proves, delegated to a pipeline's service if asked.

        Raises:
            IdentityError: No, a bad or an unacceptable credential.
            AccessDenied: The caller may not act for the pipeline it names.
        """
        self.refresh_policy()
        scheme, _, secret = credential.authorization.partition(" ")
        if scheme == "Bearer" and secret:
            principal = self.tokens.verify(secret)
        elif scheme == "Local" and secret:
            principal = self._local_user(secret, credential.user)
        else:
            msg = "no credential: send a bearer token ($BANKPLATFORM_TOKEN)"
            raise IdentityError(msg)
        if credential.pipeline:
            self._check_run(principal, _checked(credential.pipeline), credential.run)
            return self.policy.delegate(principal, credential.pipeline)
        return principal

    # Runs -----------------------------------------------------------------

    def grant_run(
        self, principal: Principal, run_id: str, pipelines: list[str], minutes: int
    ) -> str:
        """A run credential: the right to act as ``pipelines``' service identities,
        for this run, its starter and at most ``minutes`` (each pipeline's
        ``run_pipeline`` decision audited with the run id).

        Raises:
            BadRequest: No pipeline, an undeclared one, or a bad run id or length.
            AccessDenied: A service asks, or the starter may not run one of them.
        """
        if principal.on_behalf_of:
            msg = f"access denied: {principal.name} acts for {principal.on_behalf_of}; a run is started by a person or a scheduler"
            raise AccessDenied(msg)
        names = sorted({_checked(name) for name in pipelines})
        unknown = [name for name in names if name not in self.policy.pipelines]
        if not names or unknown:
            msg = f"a run credential names declared pipelines only (not {', '.join(unknown) or 'none'})"
            raise BadRequest(msg)
        if not 1 <= minutes <= MAX_RUN_MINUTES:
            msg = f"a run credential lasts 1 to {MAX_RUN_MINUTES} minutes"
            raise BadRequest(msg)
        for name in names:
            self._decide_run(principal, name, _checked(run_id))
        secret = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._runs = {k: g for k, g in self._runs.items() if g.expires > now}
            self._runs[_digest(secret)] = RunGrant(
                run_id, frozenset(names), principal.name, now + minutes * 60
            )
            _save_runs(self._runs_file, self._runs)
        return secret

    def renew_run(self, principal: Principal, secret: str, minutes: int) -> None:
        """Extend a live run credential of the caller's (a long-running service).

        Raises:
            AccessDenied: No such live credential of this caller.
        """
        with self._lock:
            grant = self._runs.get(_digest(secret))
            if (
                grant is None
                or grant.starter != principal.name
                or grant.expires < time.monotonic()
            ):
                raise AccessDenied(
                    "access denied: no live run credential of yours to renew"
                )
            self._runs[_digest(secret)] = RunGrant(
                grant.run_id,
                grant.pipelines,
                grant.starter,
                time.monotonic() + min(max(minutes, 1), MAX_RUN_MINUTES) * 60,
            )

    def end_run(self, principal: Principal, secret: str) -> None:
        """End a run: its credential grants nothing from now on."""
        with self._lock:
            grant = self._runs.get(_digest(secret))
            if grant is not None and grant.starter == principal.name:
                del self._runs[_digest(secret)]
                _save_runs(self._runs_file, self._runs)

    def _check_run(self, principal: Principal, pipeline: str, secret: str) -> None:
        """Acting as a pipeline's service needs the live credential of a run that
        this caller started for that pipeline; a header alone grants nothing
        (the refusal is audited)."""
        grant = self._runs.get(_digest(secret)) if secret else None
        problem = ""
        if grant is None or grant.expires < time.time():
            problem = f"acting as the {pipeline} pipeline's service needs the run credential the key service grants when a run starts (none, or ended)"
        elif grant.starter != principal.name:
            problem = f"the run credential was granted to {grant.starter}, not {principal.name}"
        elif pipeline not in grant.pipelines:
            problem = f"run {grant.run_id} was granted {', '.join(sorted(grant.pipelines))}, not {pipeline}"
        if problem:
            self._record(
                principal,
                "pipeline.act",
                f"pipeline:{pipeline}",
                "denied",
                {"reason": problem},
            )
            msg = f"access denied: {problem}"
            raise AccessDenied(msg)

    def _local_user(self, secret: str, user: str) -> Principal:
        if not self.local_sessions:
            why = (
                "the workspace manifest says production"
                if load_manifest(self.root).production
                else f"env {self.env} is in the production trust domain"
            )
            msg = f"a signed token is required ({why}); an admin issues one with `bankplatform token issue`"
            raise IdentityError(msg)
        if not hmac.compare_digest(secret.encode(), self.session_secret.encode()):
            raise IdentityError(
                "local session credential does not match this key service"
            )
        name = user or self.policy.local_default_user or ""
        if not name:
            raise IdentityError(
                "no identity: set $BANKPLATFORM_USER or access.local_default_user"
            )
        return self.policy.user(_checked(name))

    def describe(self, principal: Principal) -> dict[str, Any]:
        """``whoami``: the principal, its permitted actions and the pipelines it may run."""
        return {
            "name": principal.name,
            "roles": sorted(principal.roles),
            "source": principal.source,
            "on_behalf_of": principal.on_behalf_of,
            "actions": sorted(
                a.value for a in Action if self.policy.permits(principal, a)
            ),
            "pipelines": {
                name: access.service for name, access in self.policy.pipelines.items()
            },
            "env": self.env,
            "production": self.production,
        }

    # Decisions ------------------------------------------------------------

    def decide(
        self,
        principal: Principal,
        action: str,
        resource: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Allow or deny ``action`` on ``resource``, audited either way.

        Raises:
            BadRequest: Unknown action or a malformed resource.
            AccessDenied: Denied (after the record is written).
        """
        try:
            chosen = Action(action)
        except ValueError:
            msg = f"unknown action {action[:80]!r}"
            raise BadRequest(msg) from None
        pipeline = resource.removeprefix("pipeline:")
        if chosen is Action.RUN_PIPELINE and pipeline in self.policy.pipelines:
            self._decide_run(principal, pipeline)
            return
        self._enforce(principal, chosen, _resource(resource), details)

    def _decide_run(
        self, principal: Principal, pipeline: str, run_id: str = ""
    ) -> None:
        """``run_pipeline`` on a declared pipeline: one of its ``run_by`` roles too."""
        allowed = self.policy.may_run(principal, pipeline)
        self._record(
            principal,
            Action.RUN_PIPELINE.value,
            f"pipeline:{pipeline}",
            "allowed" if allowed else "denied",
            {
                "roles": sorted(principal.roles),
                "run_by": self.policy.pipelines[pipeline].run_by,
                **({"run_id": run_id} if run_id else {}),
            },
        )
        self.policy.require_run(principal, pipeline)

    def _enforce(
        self,
        principal: Principal,
        action: Action,
        resource: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._appended()
        enforce(self.policy, principal, action, resource, self.audit, details)

    def dataset_access(self, principal: Principal, dataset: str, operation: str) -> str:
        """Decide a load (``read``) or save (``write``) of a dataset from the catalog.

        Returns:
            The dataset's classification.

        Raises:
            AccessDenied: The dataset is not classified in the workspace catalog, or
                the principal may not (audited).
        """
        name = _checked(dataset)
        config = self._catalog(name)
        classification = str((config.get("metadata") or {}).get("classification", ""))
        if classification not in _DATASET_ACTIONS:
            self._record(
                principal,
                f"dataset.{operation}",
                f"dataset:{name}",
                "denied",
                {"reason": "not classified"},
            )
            msg = f"access denied: dataset {name} is not a pii or confidential dataset of the workspace catalog (the key service serves keys for those only)"
            raise AccessDenied(msg)
        read, write = _DATASET_ACTIONS[classification]
        self._enforce(
            principal,
            read if operation == "read" else write,
            f"dataset:{name}",
            {"classification": classification, "operation": operation},
        )
        return classification

    def check_run_catalog(
        self, principal: Principal, datasets: dict[str, str]
    ) -> list[str]:
        """Datasets a run would open with another type than the workspace catalog's.

        A run's catalog comes from the caller's config (``conf/local``,
        ``--conf-source``, runtime overrides); a classified dataset must keep the
        type the service's own catalog gives it, or an ingestion run could write
        raw PII as plain CSV. Returns one sentence per mismatch (audited if any).
        """
        found = []
        for name, run_type in sorted(datasets.items()):
            config = self._catalog(_checked(name))
            classification = (config.get("metadata") or {}).get("classification")
            if classification not in _DATASET_ACTIONS:
                continue
            expected = str(config.get("type", "")).rsplit(".", 1)[-1]
            if run_type.rsplit(".", 1)[-1] != expected:
                found.append(
                    f"dataset {name} is {classification} and a {expected} in the workspace catalog, "
                    f"but this run would open it as {run_type.rsplit('.', 1)[-1]}"
                )
        if found:
            self._record(
                principal, "catalog.check", "catalog", "denied", {"mismatches": found}
            )
        return found

    def data_key(self, principal: Principal, dataset: str) -> tuple[bytes, int, bytes]:
        """A fresh data key to write ``dataset`` (decided and audited first)."""
        self.dataset_access(principal, dataset, "write")
        return self.keyring.generate_data_key(key_context(dataset))

    def unwrap(
        self, principal: Principal, dataset: str, version: int, wrapped: bytes
    ) -> bytes:
        """The data key of one file of ``dataset`` (decided and audited first)."""
        self.dataset_access(principal, dataset, "read")
        return self.keyring.unwrap(version, wrapped, key_context(dataset))

    def pseudonyms(
        self, principal: Principal, kind: str, values: list[str | None]
    ) -> list[str | None]:
        """Tokens for identifiers; the key never leaves the service (audited)."""
        try:
            chosen = IdentifierKind(kind)
        except ValueError:
            msg = f"unknown identifier kind {kind[:20]!r}"
            raise BadRequest(msg) from None
        if len(values) > MAX_PSEUDONYM_VALUES:
            msg = f"at most {MAX_PSEUDONYM_VALUES:,} values per request"
            raise BadRequest(msg)
        self._enforce(
            principal,
            Action.PSEUDONYMISE,
            f"identifiers:{chosen.name.lower()}",
            {"values": len(values)},
        )
        with self._lock:
            if self._pseudonymiser is None:
                self._pseudonymiser = Pseudonymiser(self.keyring.pseudonymisation_key())
        maker = self._pseudonymiser
        return [None if v is None else maker.token(str(v), chosen) for v in values]

    def issue_token(
        self, principal: Principal, user: str, roles: list[str], minutes: int
    ) -> tuple[str, str]:
        """A token for a declared user, issued by an admin (audited)."""
        self._enforce(principal, Action.ISSUE_TOKENS, f"user:{_checked(user)}")
        token, jti = self.tokens.issue(user, roles, timedelta(minutes=minutes))
        self._record(
            principal,
            "token.issue",
            f"user:{user}",
            "allowed",
            {"roles": sorted(roles), "jti": jti, "ttl_minutes": minutes},
        )
        return token, jti

    def revoke_token(self, principal: Principal, jti: str, reason: str) -> None:
        """Revoke a token id (audited)."""
        self._enforce(principal, Action.ISSUE_TOKENS, "tokens")
        self.tokens.revoke(jti, reason)
        self._record(
            principal,
            "token.revoke",
            f"token:{jti}",
            "allowed",
            {"reason": reason[:500]},
        )

    # Audit ----------------------------------------------------------------

    def record(
        self,
        principal: Principal,
        action: str,
        resource: str,
        outcome: Outcome,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append a client's record; the actor is the caller's proven identity.

        Raises:
            BadRequest: A malformed action or outcome.
            AccessDenied: The caller may not state it (a refused registration is
                audited).
        """
        self._check_record(principal, action, outcome)
        if action == REGISTER_RECORD and outcome == "allowed":
            return self._register(principal, _resource(resource), details)
        if action == PACKAGE_RECORD and outcome == "allowed":
            msg = "audit record refused: an allowed model.package is written by the key service itself, when it signs a bundle"
            raise BadRequest(msg)
        if action in _BUNDLE_RECORDS and outcome == "allowed":
            self._check_bundle_named(principal, action, _resource(resource), details)
        return self._record(principal, action, _resource(resource), outcome, details)

    def _check_bundle_named(
        self,
        principal: Principal,
        action: str,
        resource: str,
        details: dict[str, Any] | None,
    ) -> None:
        """An approval or a promotion names the bundle it lets run: one this service
        signed for exactly this version (a promotion: the one its approval named)."""
        digest = str((details or {}).get("bundle_digest", ""))
        problem = ""
        if self.bundles.resource_of(digest) != resource:
            problem = f"{action} of {resource} names no bundle the key service packaged for it ({digest[:12] or 'none'})"
        elif action == "model.promote":
            approved = fold_version_facts(self.audit.records(), resource)
            if approved.approved_bundle != digest:
                problem = f"the promotion names bundle {digest[:12]}..., the approval {approved.approved_bundle[:12] or 'none'}"
        if problem:
            self._record(principal, action, resource, "denied", {"reason": problem})
            msg = f"audit record refused: {problem}"
            raise AccessDenied(msg)

    # Bundles --------------------------------------------------------------

    def package_bundle(
        self, principal: Principal, request: PackageRequest
    ) -> dict[str, Any]:
        """Check a bundle against the audit log, write its provenance, sign and keep it.

        Raises:
            BadRequest: Malformed (names, sizes, missing parts).
            AccessDenied: The caller may not approve models, or the audit log does
                not let this bundle be signed (audited, with the reason).
        """
        resource = _resource(request.resource)
        problem = request_problem(request)
        if problem:
            raise BadRequest(f"bundle refused: {problem}")
        if not self.policy.permits(principal, Action.APPROVE_MODEL):
            problem = f"{principal.name} may not package a model (needs {Action.APPROVE_MODEL.value})"
        facts = fold_version_facts(self.audit.records(), resource)
        training = self.policy.pipelines.get(TRAINING_PIPELINE)
        problem = problem or governance_problem(
            request, facts, principal, training.service if training else ""
        )
        if problem:
            self._record(
                principal, PACKAGE_RECORD, resource, "denied", {"reason": problem}
            )
            msg = f"bundle refused: {problem}"
            raise AccessDenied(msg)
        head = self.audit.checkpoint_covering(facts.evaluated_seq)
        written = self.bundles.write(
            request, provenance(request, facts, principal, head)
        )
        self._record(
            principal,
            PACKAGE_RECORD,
            resource,
            "allowed",
            {"bundle_digest": written["digest"], "bytes": written["bytes"]},
        )
        return written

    def bundle_archive(self, principal: Principal, digest: str) -> bytes:
        """A signed bundle as a tar, for a reader of reports (the scoring service)."""
        self._enforce(principal, Action.READ_REPORTS, f"bundle:{_checked(digest)}")
        archive = self.bundles.archive(digest)
        if not archive:
            msg = f"no bundle {digest[:12]}... in the key service's store"
            raise BadRequest(msg)
        return archive

    def _register(
        self, principal: Principal, resource: str, details: dict[str, Any] | None
    ) -> dict[str, Any]:
        """A version's registration: stated by the training pipeline's service
        identity, once per version (what a later record would say about the version's
        artefact or trainer is refused, not appended after the first)."""
        training = self.policy.pipelines.get(TRAINING_PIPELINE)
        with self._register_lock:
            problem = ""
            if training is not None and principal.name != training.service:
                problem = f"only the training service ({training.service}) registers a model version, not {principal.name}"
            elif any(
                r.get("action") == REGISTER_RECORD
                and r.get("resource") == resource
                and r.get("outcome") == "allowed"
                for r in self.audit.records()
            ):
                problem = (
                    f"{resource} is registered already: a version is registered once"
                )
            if problem:
                self._record(
                    principal, REGISTER_RECORD, resource, "denied", {"reason": problem}
                )
                msg = f"audit record refused: {problem}"
                raise AccessDenied(msg)
            return self._record(
                principal, REGISTER_RECORD, resource, "allowed", details
            )

    def _check_record(self, principal: Principal, action: str, outcome: str) -> None:
        """A client's record: a well-formed name, and an ``allowed`` record of a
        governed action only from an identity whose role permits that action
        (nobody can write "approved" into the log for somebody else)."""
        if not _NAME.match(action) or outcome not in ("allowed", "denied", "failed"):
            msg = f"audit record refused: action {action[:80]!r}, outcome {outcome!r}"
            raise BadRequest(msg)
        required = _GOVERNED_RECORDS.get(action) if outcome == "allowed" else None
        if action.startswith(_SCORING_RECORDS[0]):
            required = _SCORING_RECORDS[1]
        if required is not None and not self.policy.permits(principal, required):
            msg = f"audit record refused: {principal.name} may not record {outcome} {action} (needs {required.value})"
            raise AccessDenied(msg)

    def record_many(
        self,
        principal: Principal,
        entries: list[tuple[str, str, Outcome, dict[str, Any]]],
    ) -> list[dict[str, Any]]:
        """Append a batch of a client's records (a scoring service's requests)."""
        for action, _, outcome, _ in entries:
            self._check_record(principal, action, outcome)
            if action in (PACKAGE_RECORD, *_BUNDLE_RECORDS):
                msg = (
                    f"audit record refused: {action} is recorded alone, not in a batch"
                )
                raise BadRequest(msg)
            if action == REGISTER_RECORD and outcome == "allowed":
                msg = "audit record refused: a model version's registration is recorded alone, not in a batch"
                raise BadRequest(msg)
        checked = [(a, _resource(r), o, d) for a, r, o, d in entries]
        self._appended()
        return self.audit.append_many(principal.name, checked, principal.on_behalf_of)

    def verify_token(self, principal: Principal, token: str) -> Principal:
        """Who a client's bearer token proves, for a service that holds ``verify_tokens``.

        A service that authenticates its own clients (the scoring service) asks
        here; the key service's verdict (signature, expiry, revocation, binding to
        ``access.users``) is the only one. Allowed checks are not audited (the
        asking service audits the request), denied ones are.

        Raises:
            AccessDenied: The caller may not verify tokens.
            IdentityError: The token is not valid.
        """
        if not self.policy.permits(principal, Action.VERIFY_TOKENS):
            self._enforce(principal, Action.VERIFY_TOKENS, "tokens")
        return self.tokens.verify(token)

    def _record(
        self,
        principal: Principal,
        action: str,
        resource: str,
        outcome: Outcome,
        details: dict[str, Any] | None,
    ) -> dict[str, Any]:
        self._appended()
        return self.audit.append(
            actor=principal.name,
            on_behalf_of=principal.on_behalf_of,
            action=action,
            resource=resource,
            outcome=outcome,
            details=details,
        )

    def records(
        self, principal: Principal, resource: str = "", tail: int = 0
    ) -> list[dict[str, Any]]:
        """Records to read: all with ``read_audit_log``; a model's own, a scoring
        request's, a monitoring window's and a review item's with ``read_reports``."""
        if not self.policy.permits(principal, Action.READ_AUDIT_LOG):
            if not (
                resource.startswith(_REPORT_RESOURCES)
                and self.policy.permits(principal, Action.READ_REPORTS)
            ):
                self._enforce(
                    principal,
                    Action.READ_AUDIT_LOG,
                    "audit_log",
                    {"resource": resource[:300]},
                )
        found = [
            r
            for r in self.audit.records()
            if not resource or str(r.get("resource", "")).startswith(resource)
        ]
        return found[-tail:] if tail else found

    def verify(self, principal: Principal) -> Verdict:
        """Verify the log; the read is audited only when the chain is intact."""
        if not self.policy.permits(principal, Action.READ_AUDIT_LOG):
            self._enforce(principal, Action.READ_AUDIT_LOG, "audit_log")
        carried = [
            CarriedHead(name, head) for name, head in self.bundles.carried_heads()
        ]
        verdict = self.audit.verify(carried)
        if verdict.ok:
            self._enforce(principal, Action.READ_AUDIT_LOG, "audit_log")
        return verdict

    def _appended(self) -> None:
        self._last_append = time.monotonic()

    def sign_when_idle(self, idle_seconds: float = 1.0) -> None:
        """Checkpoint the head once appends have paused (the tail stays short)."""
        if self._last_append and time.monotonic() - self._last_append > idle_seconds:
            self._last_append = 0.0
            self.audit.sign_head()


def _load_runs(path: Path) -> dict[str, RunGrant]:
    """The live run credentials a previous start of the service granted."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    now, found = time.time(), {}
    for digest, entry in (content if isinstance(content, dict) else {}).items():
        try:
            grant = RunGrant(
                str(entry["run_id"]),
                frozenset(entry["pipelines"]),
                str(entry["starter"]),
                float(entry["expires"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
        if grant.expires > now:
            found[str(digest)] = grant
    return found


def _save_runs(path: Path, runs: dict[str, RunGrant]) -> None:
    """Keep the live run credentials' hashes (the service's OS user only)."""
    content = {
        digest: {
            "run_id": g.run_id,
            "pipelines": sorted(g.pipelines),
            "starter": g.starter,
            "expires": g.expires,
        }
        for digest, g in runs.items()
    }
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump(content, stream)
    temporary.replace(path)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return (found.st_ino, found.st_mtime_ns, found.st_size)


def _catalog_resolver(catalog: dict[str, Any]) -> Any:
    from kedro.io import CatalogConfigResolver  # noqa: PLC0415

    # Types and metadata decide here (the installed copy holds nothing else).
    config = {
        name: {k: v for k, v in entry.items() if k != "credentials"}
        if isinstance(entry, dict)
        else entry
        for name, entry in catalog.items()
    }
    # Declared entries and their patterns only: nothing is created at run time.
    resolver = CatalogConfigResolver(config=config, default_runtime_patterns={})

    def resolve(name: str) -> dict[str, Any]:
        if name in config:
            return dict(config[name])
        return dict(resolver.resolve_pattern(name) or {})

    return resolve


def _checked(name: str) -> str:
    if not _NAME.match(name):
        msg = f"not a valid name: {name[:80]!r}"
        raise BadRequest(msg)
    return name


def _resource(resource: str) -> str:
    if not _RESOURCE.match(resource):
        msg = f"not a valid resource: {resource[:80]!r}"
        raise BadRequest(msg)
    return resource


__all__ = ["AccessDenied", "BadRequest", "Credential", "IdentityError", "KeyAuthority"]
