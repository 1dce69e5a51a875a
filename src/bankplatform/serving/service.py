"""The scoring service's behaviour, apart from HTTP: who calls, what answers,
what is recorded, and the release controls.

Callers are authenticated by the key service (their bearer token's verdict is
reused for ``token_cache_seconds``); what a caller may do comes from that
verdict, never from the request. Every request leaves one audit record (the
service's own identity, ``svc-scoring``, with the client it proved) and every
decision one decision-log record; both are written off the request path.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

from bankplatform.errors import BankplatformError
from bankplatform.governance.registry import (
    CHALLENGER,
    CHAMPION,
    alias_holder,
    current_aliases,
)
from bankplatform.security.audit import DECISION_SHA256, AuditWriteError, Outcome
from bankplatform.security.policy import AccessDenied, Action, IdentityError
from bankplatform.serving.models import (
    VARIANTS,
    ModelRefused,
    ServedModel,
    load_served,
    servable_version,
)
from bankplatform.serving.records import (
    MAX_BACKLOG,
    BackgroundWriter,
    DecisionLog,
    DecisionLogError,
    decisions_after,
    end_mark,
    read_audited_mark,
    read_decision_records,
    write_audited_mark,
)
from bankplatform.serving.scoring import (
    ModelFault,
    OnlineFeatures,
    Scored,
    input_sha256,
    model_input,
    score_application,
)
from bankplatform.serving.traffic import (
    ReleaseMonitor,
    TrafficFile,
    routes_to_challenger,
)

if TYPE_CHECKING:
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from bankplatform.security.runtime import WorkspaceSecurity
    from bankplatform.serving.schemas import Application, TrafficState
    from bankplatform.serving.settings import ServingSettings

REFER = "refer"
_REFUSED = (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
_TOKEN_CACHE_SIZE = 10_000
_RECENT = 200_000
_MAX_SHADOW_BACKLOG = 200
# A bearer token longer than this is refused without asking the key service
# (which refuses more than 4,000 characters itself).
_MAX_TOKEN_CHARS = 4_000
# Threads that run challenger calls: a hung call holds one until it returns.
_CHALLENGER_THREADS = 4
_LOG = logging.getLogger("bankplatform.serving")


class Unavailable(BankplatformError):
    """The service cannot decide now (no champion, records not being written)."""


class DecisionNotFound(BankplatformError):
    """No decision with that request id in the decision log."""


@dataclass(frozen=True)
class Caller:
    """A proven client: its name and what its roles permit."""

    name: str
    actions: frozenset[str]


@dataclass
class ServingContext:
    """What the service is built on (made by ``bankplatform.serving.server``)."""

    settings: ServingSettings
    security: WorkspaceSecurity
    registry: MlflowClient
    features: OnlineFeatures
    model_name: str
    cut_off: float
    refer_up_to: float


def request_resource(request_id: str) -> str:
    """The audit resource of one request's record."""
    return f"request:{request_id}"


def new_request_id() -> str:
    """``req_`` and 32 hexadecimal digits."""
    return f"req_{uuid.uuid4().hex}"


class ScoringService:
    """Champion and challenger behind authentication, logs and release controls."""

    def __init__(self, context: ServingContext) -> None:
        self.context = context
        settings = context.settings
        self.traffic = TrafficFile(settings.traffic_state)
        self.monitor = ReleaseMonitor(settings.rollback)
        self.decisions = DecisionLog(settings.decision_log)
        audit_log = context.security.audit_log()
        self.audit: BackgroundWriter[tuple[str, str, str, dict[str, Any]]] = (
            BackgroundWriter("audit", audit_log.append_many, settings.flush_seconds)  # type: ignore[arg-type]
        )
        self.served: dict[str, ServedModel] = {}
        self.refused: dict[str, str] = {}
        # The version each refusal was about: an alias still naming it has not moved.
        self._refused_versions: dict[str, int | None] = {}
        self._tokens: dict[str, tuple[float, Caller | str]] = {}
        self._refreshing: set[str] = set()
        self._refresher = ThreadPoolExecutor(1, thread_name_prefix="token-refresh")
        # A cached verdict is verified again in its last fifth of life.
        self._refresh_before = context.settings.token_cache_seconds / 5
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._shadow = ThreadPoolExecutor(1, thread_name_prefix="shadow")
        self._shadow_pending = 0
        self.shadow_skipped = 0
        self.shadow_cancelled = 0
        # Challenger calls run here, each waited for at most call_timeout_ms.
        self._challenger_calls = ThreadPoolExecutor(
            _CHALLENGER_THREADS, thread_name_prefix="challenger"
        )
        # Bumped at every rollback and challenger change: queued shadow work of an
        # older release is dropped, not scored.
        self._release = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.reload("start")
        self.replayed = self._replay_unaudited()
        self._poller = threading.Thread(target=self._poll, name="aliases", daemon=True)
        self._poller.start()

    # Identity -------------------------------------------------------------

    def authenticate(self, authorization: str) -> Caller:
        """The caller a bearer token proves (the key service's verdict, cached).

        Raises:
            IdentityError: No bearer token, or the key service refused it.
            Unavailable: The key service cannot be reached to check it.
        """
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            msg = "no credential: send Authorization: Bearer <token> (`bankplatform token issue`)"
            raise IdentityError(msg)
        token = token.strip()
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and now < cached[0] < now + self._refresh_before:
            self._refresh_soon(key, token)  # verified again before it expires
        if cached is None or cached[0] < now:
            verdict: Caller | str = (
                f"token rejected: longer than {_MAX_TOKEN_CHARS:,} characters"
                if len(token) > _MAX_TOKEN_CHARS
                else self._verify(token)
            )
            cached = (now + self.context.settings.token_cache_seconds, verdict)
            if len(self._tokens) >= _TOKEN_CACHE_SIZE:
                self._tokens.clear()
            self._tokens[key] = cached
        if isinstance(cached[1], str):
            raise IdentityError(cached[1])
        return cached[1]

    def _refresh_soon(self, key: str, token: str) -> None:
        """Ask the key service again in the background while the cached verdict
        still holds, so that requests rarely wait for a verification (a request
        waits only when no verdict is cached; a revoked token still stops working
        within ``token_cache_seconds``)."""
        with self._lock:
            if key in self._refreshing or len(self._refreshing) >= _TOKEN_CACHE_SIZE:
                return
            self._refreshing.add(key)
        self._refresher.submit(self._refresh, key, token)

    def _refresh(self, key: str, token: str) -> None:
        try:
            verdict = self._verify(token)
            self._tokens[key] = (
                time.monotonic() + self.context.settings.token_cache_seconds,
                verdict,
            )
        except BaseException as error:  # the request path verifies at expiry
            _LOG.warning("token verdict not refreshed: %s", type(error).__name__)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _verify(self, token: str) -> Caller | str:
        try:
            verdict = self.context.security.tokens().verify(token)
        except IdentityError as error:
            return str(error)
        except BankplatformError as error:  # the key service is down: not a verdict
            msg = f"cannot check the token now: {error}"
            raise Unavailable(msg) from None
        return Caller(str(verdict["name"]), frozenset(verdict["actions"]))

    @staticmethod
    def authorize(caller: Caller, *actions: Action) -> None:
        """Refuse unless one of the caller's roles permits one of ``actions``.

        Raises:
            AccessDenied: None does.
        """
        if not any(action.value in caller.actions for action in actions):
            wanted = " or ".join(a.value for a in actions)
            msg = f"access denied: {caller.name} may not {wanted}"
            raise AccessDenied(msg)

    def record_request(
        self,
        caller: str,
        route: str,
        status: int,
        request_id: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Queue the audit record of one request (every request gets one)."""
        outcome = (
            "allowed"
            if status < HTTPStatus.BAD_REQUEST
            else ("denied" if status in _REFUSED else "failed")
        )
        details = {
            "client": caller,
            "route": route,
            "status": status,
            "request_id": request_id,
            **(extra or {}),
        }
        # Under the request, not the model: a model's own records (registration,
        # approval, evaluation) stay few however many decisions it makes.
        self.audit.put(
            ("scoring.request", request_resource(request_id), outcome, details)
        )

    # Scoring --------------------------------------------------------------

    def score(
        self, application: Application, caller: Caller, request_id: str
    ) -> dict[str, Any]:
        """Decide one application; the response body of ``POST /v1/score``.

        Raises:
            Unavailable: No champion is served, or records are not being written.
            UnknownCustomer: No online features for the customer.
        """
        started = time.perf_counter()
        self._require_records()
        state = self.traffic.state
        # An unknown customer is 404 in every mode, halted or not.
        features = self.context.features.of(application.customer_token)
        row = model_input(features.values, application)
        if state.halted:
            return self._respond(
                request_id,
                caller,
                application,
                row,
                None,
                REFER,
                started,
                halted=True,
                as_of=features.as_of,
            )
        champion = self.served.get(CHAMPION)
        if champion is None:  # nothing may decide: a person does
            reason = self.refused.get(CHAMPION, "no champion is set")
            return self._respond(
                request_id,
                caller,
                application,
                row,
                None,
                REFER,
                started,
                fallback=f"no champion: {reason}",
                as_of=features.as_of,
            )
        challenger = self.served.get(CHALLENGER)
        if challenger is not None and routes_to_challenger(
            application.customer_token, state.challenger_weight
        ):
            answered, result, fallback = self._canary(champion, challenger, row)
        else:
            answered, result, fallback = champion, self._champion(champion, row), ""
            if challenger is not None and state.shadow:
                self._submit_shadow(challenger, row, result, request_id)
        decision = REFER if result is None else self.decision_at(result.score)
        return self._respond(
            request_id,
            caller,
            application,
            row,
            answered,
            decision,
            started,
            result,
            fallback,
            as_of=features.as_of,
        )

    def decision_at(self, score: float) -> str:
        """Approve at or below the cut-off; in the refer band an underwriter
        decides (``refer``); above it the model declines."""
        if score <= self.context.cut_off:
            return "approve"
        return REFER if score <= self.context.refer_up_to else "decline"

    def challenger_in_traffic(self) -> bool:
        """Whether a challenger may answer or shadow-score now."""
        state = self.traffic.state
        return CHALLENGER in self.served and (
            state.challenger_weight > 0 or state.shadow
        )

    def _champion(self, champion: ServedModel, row: dict[str, Any]) -> Scored | None:
        reasons = self.context.settings.reason_codes
        try:
            return score_application(champion, row, reasons)
        except ModelFault:
            return None  # referred to a person, never an error to the client

    def _canary(
        self, champion: ServedModel, challenger: ServedModel, row: dict[str, Any]
    ) -> tuple[ServedModel, Scored | None, str]:
        began = time.perf_counter()
        call = self._submit_challenger(challenger, row)
        baseline = self._champion(champion, row)  # meanwhile, in this thread
        result, fault, latency = self._challenge_outcome(call, began)
        self._observe(result, latency, baseline)
        if result is None:  # the champion answers instead
            return champion, baseline, f"challenger {challenger.version}: {fault}"
        return challenger, result, ""

    def _submit_shadow(
        self,
        challenger: ServedModel,
        row: dict[str, Any],
        champion: Scored | None,
        request_id: str,
    ) -> None:
        """Queue a silent challenger score; skipped when a slow challenger has a
        backlog (memory stays bounded; the skips are counted in its window)."""
        with self._lock:
            if self._shadow_pending >= _MAX_SHADOW_BACKLOG:
                self.shadow_skipped += 1
                return
            self._shadow_pending += 1
            release = self._release
        self._shadow.submit(
            self._shadow_score, challenger, row, champion, request_id, release
        )

    def _shadow_score(
        self,
        challenger: ServedModel,
        row: dict[str, Any],
        champion: Scored | None,
        request_id: str,
        release: int,
    ) -> None:
        try:
            if release != self._release or not self.traffic.state.shadow:
                with self._lock:
                    self.shadow_cancelled += 1  # rolled back while it waited
                return
            began = time.perf_counter()
            call = self._submit_challenger(challenger, row)
            result, fault, latency = self._challenge_outcome(call, began)
            self._record_shadow(
                challenger, result, fault, latency, champion, request_id
            )
        except BaseException as error:  # never leave the backlog counted
            _LOG.warning("shadow scoring failed: %s", type(error).__name__)
        finally:
            with self._lock:
                self._shadow_pending -= 1

    def _record_shadow(
        self,
        challenger: ServedModel,
        result: Scored | None,
        fault: str,
        latency: float,
        champion: Scored | None,
        request_id: str,
    ) -> None:
        self.decisions.put(
            {
                "type": "shadow",
                "request_id": request_id,
                "time": _now(),
                "model": challenger.describe(),
                "score": result.score if result else None,
                "champion_score": champion.score if champion else None,
                "latency_ms": round(latency, 3),
                "fault": fault,
            }
        )
        self._observe(result, latency, champion)

    def _next_release(self) -> None:
        """A rollback or a new challenger: queued shadow work of the old release
        is dropped, and its challenger calls get threads of their own (a hung call
        of the old one keeps its thread until it returns, never the new one's)."""
        self._release += 1
        old, self._challenger_calls = (
            self._challenger_calls,
            ThreadPoolExecutor(_CHALLENGER_THREADS, thread_name_prefix="challenger"),
        )
        old.shutdown(wait=False, cancel_futures=True)

    def _challenger_score(
        self, challenger: ServedModel, row: dict[str, Any]
    ) -> tuple[Scored | None, str]:
        """One challenger call (in a challenger thread): its score or its fault."""
        try:
            return score_application(
                challenger, row, self.context.settings.reason_codes
            ), ""
        except ModelFault as error:
            return None, str(error)

    def _submit_challenger(
        self, challenger: ServedModel, row: dict[str, Any]
    ) -> Future[tuple[Scored | None, str]] | None:
        """Start one challenger call; ``None`` when its release just ended."""
        try:
            return self._challenger_calls.submit(
                self._challenger_score, challenger, row
            )
        except RuntimeError:  # the pool was replaced by a rollback meanwhile
            return None

    def _challenge_outcome(
        self, call: Future[tuple[Scored | None, str]] | None, began: float
    ) -> tuple[Scored | None, str, float]:
        """The challenger's score or fault, and its latency in ms; a call slower
        than the policy's ``call_timeout_ms`` is a fault (the champion answers)
        and is cancelled if it has not started."""
        limit = self.context.settings.rollback.call_timeout_ms / 1000
        if call is None:
            return None, "not called: the release changed", 0.0
        try:
            result, fault = call.result(
                timeout=max(limit - (time.perf_counter() - began), 0)
            )
        except FutureTimeout:
            call.cancel()
            result, fault = None, f"timed out after {limit * 1000:.0f} ms"
        except BaseException as error:  # a call that could not even run
            result, fault = None, f"failed: {type(error).__name__}"
        return result, fault, (time.perf_counter() - began) * 1000

    def _observe(
        self, result: Scored | None, latency_ms: float, champion: Scored | None
    ) -> None:
        """Judge one challenger answer against the champion's on the same application."""
        shift = abs(result.score - champion.score) if result and champion else None
        breach = self.monitor.observe(
            failed=result is None, latency_ms=latency_ms, shift=shift
        )
        if breach is not None:
            self.rollback("automatic rollback", breach, automatic=True)

    def _respond(
        self,
        request_id: str,
        caller: Caller,
        application: Application,
        row: dict[str, Any] | None,
        answered: ServedModel | None,
        decision: str,
        started: float,
        result: Scored | None = None,
        fallback: str = "",
        *,
        halted: bool = False,
        as_of: datetime | None = None,
    ) -> dict[str, Any]:
        response = {
            "request_id": request_id,
            "score": result.score if result else None,
            "decision": decision,
            "cut_off": self.context.cut_off,
            "refer_up_to": self.context.refer_up_to,
            "reason_codes": result.reason_codes if result else [],
            "model_version": answered.version if answered and result else None,
            "variant": answered.variant if answered and result else None,
        }
        record = {
            "type": "decision",
            **response,
            "time": _now(),
            "client": caller.name,
            "customer_token": application.customer_token,
            "application": application.model_dump(exclude={"customer_token"}),
            "features": row,
            "input_sha256": input_sha256(row) if row is not None else None,
            # When the features were true: a monthly snapshot's time, or the
            # streamed booking that last changed them.
            "features_as_of": as_of.isoformat() if as_of else None,
            "model": answered.describe() if answered and result else None,
            "fallback": fallback,
            "halted": halted,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        try:  # answered only once its line is on disk
            digest = self.decisions.put(record)
        except DecisionLogError as error:
            raise Unavailable(f"not answered: {error}") from None
        self._remember(
            request_id,
            {
                "decision": decision,
                "model_version": response["model_version"],
                DECISION_SHA256: digest,
            },
        )
        return response

    def logged_line_sha256(self, request_id: str) -> str:
        """The sha256 of a recent decision's log line (for its audit record)."""
        with self._lock:
            return str(self._recent.get(request_id, {}).get(DECISION_SHA256, ""))

    def _remember(self, request_id: str, summary: dict[str, Any]) -> None:
        with self._lock:
            self._recent[request_id] = summary
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)

    def _require_records(self) -> None:
        if not self.audit.healthy:
            msg = f"not deciding: the audit log is not being written ({self.audit.last_error or 'backlog full'})"
            raise Unavailable(msg)

    # Oversight and releases -----------------------------------------------

    def set_traffic(
        self, caller: Caller, *, weight: float | None, shadow: bool | None, reason: str
    ) -> TrafficState:
        """Canary weight and shadow mode, audited before they take effect."""
        changes: dict[str, Any] = {"changed_by": caller.name, "reason": reason}
        if weight is not None:
            changes["challenger_weight"] = weight
        if shadow is not None:
            changes["shadow"] = shadow
        if (weight or shadow) and CHALLENGER not in self.served:
            why = self.refused.get(CHALLENGER, "no challenger is set")
            raise BankplatformError(f"no challenger to send traffic to: {why}")
        self._audit_now(
            "scoring.traffic",
            caller.name,
            {**changes, "before": self.traffic.state.model_dump()},
        )
        self.monitor.reset()
        return self.traffic.update(**changes)

    def halt(self, caller: Caller, *, halted: bool, reason: str) -> TrafficState:
        """The kill switch: every application referred to manual underwriting."""
        self._audit_now(
            "scoring.halt" if halted else "scoring.resume",
            caller.name,
            {"reason": reason},
        )
        return self.traffic.update(halted=halted, changed_by=caller.name, reason=reason)

    def rollback(
        self, actor: str, reason: str, *, automatic: bool = False
    ) -> TrafficState:
        """Take the challenger out of traffic (weight 0, shadow off)."""
        with self._lock:
            state = self.traffic.state
            if automatic and state.challenger_weight == 0 and not state.shadow:
                return state
            challenger = self.served.get(CHALLENGER)
            self._audit_now(
                "scoring.rollback",
                actor,
                {
                    "reason": reason,
                    "automatic": automatic,
                    "challenger_version": challenger.version if challenger else None,
                    "window": self.monitor.summary(),
                    "before": state.model_dump(),
                },
            )
            self.monitor.reset()
            self._next_release()
            return self.traffic.update(
                challenger_weight=0.0, shadow=False, changed_by=actor, reason=reason
            )

    def override(
        self, caller: Caller, request_id: str, decision: str, reason: str
    ) -> dict[str, Any]:
        """A reviewer replaces a logged decision, with a reason."""
        original = self.find(request_id)
        entry = {
            "type": "override",
            "request_id": request_id,
            "time": _now(),
            "reviewer": caller.name,
            "decision": decision,
            "original_decision": original["decision"],
            "reason": reason,
        }
        self._audit_now("scoring.override", caller.name, entry)
        self._durably(entry)
        self._remember(request_id, {**original, "decision": decision})
        return {
            "request_id": request_id,
            "decision": decision,
            "original_decision": original["decision"],
        }

    def appeal(self, caller: Caller, request_id: str, reason: str) -> dict[str, Any]:
        """An applicant contests a decision: it goes to the appeal queue."""
        original = self.find(request_id)
        entry = {
            "type": "appeal",
            "request_id": request_id,
            "time": _now(),
            "filed_by": caller.name,
            "decision": original["decision"],
            "reason": reason,
            "status": "open",
        }
        self._audit_now("scoring.appeal", caller.name, entry)
        queue = self.context.settings.appeal_queue
        queue.parent.mkdir(parents=True, exist_ok=True)
        with queue.open("a", encoding="utf-8") as stream:
            stream.write(_dumps(entry) + "\n")
        self._durably(entry)
        return {"request_id": request_id, "status": "open", "queue": "appeals"}

    def _durably(self, entry: dict[str, Any]) -> None:
        """Log an oversight record (on disk before the answer).

        Raises:
            Unavailable: It could not be written.
        """
        try:
            self.decisions.put(entry)
        except DecisionLogError as error:
            raise Unavailable(str(error)) from None

    def find(self, request_id: str) -> dict[str, Any]:
        """The decision a request id names (recent ones from memory).

        Raises:
            DecisionNotFound: Never decided here.
        """
        with self._lock:
            found = self._recent.get(request_id)
        if found is None:
            found = _logged_decision(self.decisions.folder, request_id)
        if found is None:
            msg = f"no decision with request id {request_id}"
            raise DecisionNotFound(msg)
        return dict(found)

    def _audit_now(self, action: str, actor: str, details: dict[str, Any]) -> None:
        """Audit an oversight action before it takes effect (it fails if it cannot)."""
        try:
            self.context.security.audit_log().append(
                action, "scoring", "allowed", {"by": actor, **details}
            )
        except (AuditWriteError, BankplatformError) as error:
            msg = f"not changed: the audit log cannot be written ({error})"
            raise Unavailable(msg) from None

    # Models -----------------------------------------------------------------

    def reload(self, actor: str) -> dict[str, Any]:
        """Re-read the aliases and load what changed; refusals are audited.

        A refused version is not served, and what was serving keeps serving
        unless the refusal is of that very version (decommissioned since).
        """
        name = self.context.model_name
        records = list(
            self.context.security.audit_log().records(resource=f"model:{name}/")
        )
        changes: dict[str, Any] = {}
        for variant in VARIANTS:
            current = self.served.get(variant)
            self._reload_variant(variant, records, actor)
            loaded = self.served.get(variant)
            if (loaded.version if loaded else None) != (
                current.version if current else None
            ):
                changes[variant] = [
                    current.version if current else None,
                    loaded.version if loaded else None,
                ]
                if variant == CHALLENGER:
                    self.monitor.reset()
                    self._next_release()
        if changes:
            self._audit_now("scoring.models_loaded", actor, {"changes": changes})
        return {"changes": changes, **self.models()}

    def _reload_variant(
        self, variant: str, records: list[dict[str, Any]], actor: str
    ) -> None:
        name, current = self.context.model_name, self.served.get(variant)
        wanted: int | None = None
        try:
            servable = servable_version(self.context.registry, name, variant, records)
            if servable is None:
                self.served.pop(variant, None)
                self.refused.pop(variant, None)
                self._refused_versions.pop(variant, None)
                return
            wanted = servable.version
            if current is None or (current.version, current.bundle_digest) != (
                servable.version,
                servable.bundle_digest,
            ):
                loaded = load_served(
                    name, servable, variant, records, self.context.security.bundles()
                )
                self._refuse_other_bounds(loaded)
                self.served[variant] = loaded
            self.refused.pop(variant, None)
            self._refused_versions.pop(variant, None)
        except ModelRefused as error:
            refused = wanted or alias_holder(self.context.registry, name, variant)
            self._refused_versions[variant] = refused
            if current is not None and current.version == refused:
                self.served.pop(variant, None)  # its own standing is gone
            if self.refused.get(variant) != str(error):
                _LOG.warning("%s not served: %s", variant, error)
                self._audit_now(
                    "scoring.model_refused",
                    actor,
                    {"variant": variant, "reason": str(error)},
                )
            self.refused[variant] = str(error)

    def _refuse_other_bounds(self, loaded: ServedModel) -> None:
        """A version decides only at the cut-off and refer band its gates were
        judged at (its signed gate report): a service configured otherwise
        (an edited ``governance.yml``) refuses it instead of deciding differently.

        Raises:
            ModelRefused: The bounds differ.
        """
        bounds = (self.context.cut_off, self.context.refer_up_to)
        if loaded.judged_at != bounds:
            msg = (
                f"{loaded.name} version {loaded.version} was judged at cut-off {loaded.judged_at[0]} "
                f"(refer band up to {loaded.judged_at[1]}); this service decides at {bounds[0]} "
                f"(up to {bounds[1]}): governance.yml differs from what was approved, not served"
            )
            raise ModelRefused(msg)

    def models(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows: served versions, refusals, traffic, window."""
        return {
            "model": self.context.model_name,
            "served": {v: m.describe() for v, m in self.served.items()},
            "refused": dict(self.refused),
            "traffic": self.traffic.state.model_dump(),
            "challenger_window": {
                **self.monitor.summary(),
                "shadow_skipped": self.shadow_skipped,
                "shadow_cancelled": self.shadow_cancelled,
            },
            "cut_off": self.context.cut_off,
            "refer_up_to": self.context.refer_up_to,
        }

    def _poll(self) -> None:
        while not self._stop.wait(self.context.settings.alias_poll_seconds):
            try:
                if self._aliases_moved():
                    self.reload("alias poll")
            except Exception as error:  # the next poll tries again
                _LOG.warning(
                    "alias poll failed: %s: %s", type(error).__name__, str(error)[:300]
                )

    def _aliases_moved(self) -> bool:
        """Whether an alias names another version than the one loaded or last
        refused (one registry call: a decommissioning removes the aliases, and
        whatever an alias is moved to is checked against the audit log when it
        loads; a refusal is not re-read at every poll while the alias stays)."""
        held = current_aliases(self.context.registry, self.context.model_name)
        return any(
            held.get(variant)
            not in {
                self.served[variant].version if variant in self.served else None,
                self._refused_versions.get(variant, -1),
            }
            for variant in VARIANTS
        )

    def _replay_unaudited(self) -> int:
        """Append the audit record of every decision logged without one (the
        process died between the durable line and its audit batch), from the
        line, which holds everything the record says; returns how many.

        Reads the lines after the folder's audited mark (a clean stop's end),
        older than a few flush intervals (a running instance may still be
        auditing newer ones), against the newest request records.
        """
        folder = self.decisions.folder
        grace = max(2.0, 10 * self.context.settings.flush_seconds)
        before = datetime.now(UTC) - timedelta(seconds=grace)
        try:
            lines, reached = decisions_after(
                folder,
                read_audited_mark(folder),
                before.isoformat(timespec="microseconds"),
            )
            missing = self._unaudited(lines)
            if missing:
                self.context.security.audit_log().append_many(missing)
                _LOG.warning(
                    "replayed %d missing decision audit record(s)", len(missing)
                )
        except Exception as error:  # the next start tries again
            _LOG.warning(
                "decision audit records not replayed: %s: %s",
                type(error).__name__,
                str(error)[:300],
            )
            return 0
        if reached is not None:
            write_audited_mark(folder, reached)
        return len(missing)

    def _unaudited(
        self, lines: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, str, Outcome, dict[str, Any]]]:
        """The records to append: for the lines *after* the last line that has an
        audit record (a dead process's unsent batch is the log's tail; a line
        planted between audited ones is never vouched for), at most one backlog.
        The records say ``replayed``: monitoring does not count on them and
        ``decision trace`` shows it, since the line vouches for itself."""
        if not lines:
            return []
        audited = {
            str(r.get("details", {}).get("request_id"))
            for r in self.context.security.audit_log().records(
                resource="request:", tail=4 * len(lines) + 10_000
            )
        }
        last = max(
            (
                i
                for i, (_, record) in enumerate(lines)
                if str(record.get("request_id")) in audited
            ),
            default=-1,
        )
        return [
            (
                "scoring.request",
                request_resource(str(record["request_id"])),
                "allowed",
                {
                    "client": record.get("client"),
                    "route": "POST /v1/score",
                    "status": int(HTTPStatus.OK),
                    "request_id": record["request_id"],
                    "model_version": record.get("model_version"),
                    "variant": record.get("variant"),
                    "decision": record.get("decision"),
                    DECISION_SHA256: sha256,
                    "replayed": True,
                },
            )
            for sha256, record in lines[last + 1 :][:MAX_BACKLOG]
        ]

    def close(self) -> None:
        """Stop polling and write everything queued; once both logs are written,
        mark the decision log as audited to its end (the next start replays
        nothing before it)."""
        self._stop.set()
        self._shadow.shutdown(wait=True, cancel_futures=True)
        self._challenger_calls.shutdown(wait=False, cancel_futures=True)
        self._refresher.shutdown(wait=False, cancel_futures=True)
        self.decisions.close()
        self.audit.stop()
        if not self.audit.backlog:
            mark = end_mark(self.decisions.folder)
            if mark is not None:
                write_audited_mark(self.decisions.folder, mark)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _dumps(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _logged_decision(folder: Path, request_id: str) -> dict[str, Any] | None:
    """A decision older than this process, from the log (the latest word on it)."""
    found = None
    for record in read_decision_records(folder):
        if record.get("request_id") == request_id and record.get("type") in (
            "decision",
            "override",
        ):
            found = {
                "decision": record["decision"],
                "model_version": record.get("model_version"),
            }
    return found
