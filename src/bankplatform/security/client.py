"""The client side of the key and audit service: what notebooks, pipelines and the CLI hold.

A client holds a credential, never a key: a bearer token (``$BANKPLATFORM_TOKEN``),
or on a developer's own workstation the service's local session credential (a file
only the service's OS user can read) plus a declared user name. It asks the service
for a data key for one dataset, pseudonymous tokens, an access decision, an audit
append; the service decides and stamps the identity. The acting pipeline (a node's
service identity) is sent as a request, and granted by the service only if the
caller may run that pipeline.

In the embedded default the first call starts the service (``python -m
bankplatform.keyservice``) when this OS user can read the master key: on one
person's workstation the service and its clients are one trust domain, and the
boundary is the process, not the user. On a shared or production host the service
runs as its own OS user and a client that cannot read the keyring cannot start one.
"""

from __future__ import annotations

import base64
import os
import pwd
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from filelock import FileLock

from bankplatform.errors import BankplatformError
from bankplatform.security import service_socket
from bankplatform.security.audit import AuditWriteError, Outcome, Verdict
from bankplatform.security.kms import MASTER_KEY_ENV_VAR, KeyManagementError
from bankplatform.security.policy import AccessDenied, IdentityError, Principal
from bankplatform.security.service_socket import KEYSERVICE_USER_ENV_VAR

if TYPE_CHECKING:
    from datetime import timedelta

    import pandas as pd

    from bankplatform.security.pseudonyms import IdentifierKind
    from bankplatform.security.settings import SecuritySettings

TOKEN_ENV_VAR = "BANKPLATFORM_TOKEN"  # noqa: S105 - a variable name, not a secret
USER_ENV_VAR = "BANKPLATFORM_USER"
# The run credential the key service granted when the run started: what lets a
# node (and the run's worker processes) act as its pipeline's service identity.
RUN_CREDENTIAL_ENV_VAR = "BANKPLATFORM_RUN_CREDENTIAL"
_CONTEXT_PREFIX = b"bankplatform-dataset:"
_START_SECONDS = 60.0
_BATCH = 200_000
_ERRORS: dict[int, type[BankplatformError]] = {
    401: IdentityError,
    403: AccessDenied,
    409: KeyManagementError,
    503: AuditWriteError,
}
_acting = threading.local()
_process_pipeline = ""


class KeyServiceUnavailable(BankplatformError):
    """The key service cannot be reached or started."""


@contextmanager
def acting_for(pipeline: str) -> Iterator[None]:
    """Ask as ``pipeline``'s service identity inside the block (``data generate``);
    ``""`` asks as the starter even inside a node."""
    previous = getattr(_acting, "explicit", None)
    _acting.explicit = pipeline
    try:
        yield
    finally:
        _acting.explicit = previous


def serve_as(pipeline: str) -> None:
    """Every thread of this process asks as ``pipeline``'s service from now on.

    For a long-running service (``bankplatform serve``): its request and
    background threads all act as the service identity, on behalf of whoever
    started it, which the key service grants only if that person may run it.
    """
    global _process_pipeline  # noqa: PLW0603 - one service identity per process
    _process_pipeline = pipeline


def act_for_node(pipeline: str | None) -> None:
    """Let the current thread's node ask as ``pipeline``'s service (a hook sets it).

    Honoured only while a Kedro runner task is on the stack: after an interrupted
    run, a direct ``catalog.load`` in the same thread acts as the starter again.
    """
    _acting.node = pipeline


def acting_pipeline() -> str:
    """The pipeline the current thread asks for, or ``""``."""
    explicit = getattr(_acting, "explicit", None)
    if explicit is not None:
        return str(explicit)
    node = getattr(_acting, "node", None)
    if node and _inside_kedro_task():
        return str(node)
    return _process_pipeline


def _inside_kedro_task() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(
            os.path.join("kedro", "runner", "task.py")
        ):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class KeyServiceClient:
    """Calls the key service of one workspace env over its Unix socket."""

    def __init__(self, root: Path, env: str, settings: SecuritySettings) -> None:
        self.root, self.env, self.settings = root, env, settings
        self._socket = settings.keyservice_socket
        self._clients: dict[int, httpx.Client] = {}
        self._secret: str | None = None
        self._listener_checked: set[int] = set()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One authenticated request; the service's refusal raises as a one-line error.

        Raises:
            IdentityError, AccessDenied, KeyManagementError, AuditWriteError,
            BankplatformError: What the service said, in its words.
            KeyServiceUnavailable: No service, and none could be started.
        """
        for attempt in (0, 1):
            self._check_listener()
            headers = self._headers(renew=attempt > 0)
            payload = None
            if body is not None:
                # orjson: a scoring service's audit batches are its biggest bodies.
                payload = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
                headers["Content-Type"] = "application/json"
            try:
                response = self._http().request(
                    method, path, content=payload, params=params, headers=headers
                )
            except httpx.TransportError as error:
                if self.settings.keyservice_url:
                    reason = (
                        str(error).splitlines()[0]
                        if str(error)
                        else type(error).__name__
                    )
                    msg = f"the key service of env {self.env} at {self.settings.keyservice_url} cannot be reached ({reason})"
                    raise KeyServiceUnavailable(msg) from None
                if attempt:
                    raise
                self._start()  # started on demand, or says who must start it
                continue
            stale = response.status_code == 401 and "local session" in response.text  # noqa: PLR2004
            if not (stale and not attempt):
                break
        if response.status_code < 400 and response.headers.get(  # noqa: PLR2004
            "content-type", ""
        ).startswith("application/x-tar"):
            return {"archive": response.content}
        try:
            content: dict[str, Any] = response.json()
        except ValueError:
            content = {
                "error": f"key service answered {response.status_code} without a reason"
            }
        if response.status_code >= 400:  # noqa: PLR2004
            kind = _ERRORS.get(response.status_code, BankplatformError)
            raise kind(
                str(content.get("error", f"key service said {response.status_code}"))
            )
        return content

    def _check_listener(self) -> None:
        """Before a credential goes out, the process on the socket must run as the
        key service's OS user (``SO_PEERCRED``): ``$BANKPLATFORM_KEYSERVICE_USER`` on
        a shared host (set by its administrators, not in the workspace anyone can
        edit), this user on a single-user workstation (one trust domain). Checked
        once per process; a TLS service is checked by its certificate instead.

        Raises:
            KeyServiceUnavailable: Another user's process listens there.
        """
        if self.settings.keyservice_url or os.getpid() in self._listener_checked:
            return
        expected = expected_service_uid()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(5.0)
                probe.connect(str(self._socket))
                raw = probe.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
                )
        except OSError:
            return  # nobody listens yet: the request says so, or starts one
        _, uid, _ = struct.unpack("3i", raw)
        if uid != expected:
            msg = (
                f"the socket {self._socket} is served by {_user_name(uid)}, not the key "
                f"service's user {_user_name(expected)}: no credential sent (set "
                f"${KEYSERVICE_USER_ENV_VAR} to the service's OS user on a shared host)"
            )
            raise KeyServiceUnavailable(msg)
        self._listener_checked.add(os.getpid())

    def _http(self) -> httpx.Client:
        pid = os.getpid()  # a client made before a fork is not reused after it
        if pid not in self._clients:
            timeout = httpx.Timeout(300.0, connect=5.0)
            url = self.settings.keyservice_url
            if url:  # a service on its own host: TLS, verified with its certificate
                context = ssl.create_default_context(
                    cafile=str(self.settings.keyservice_tls_cert)
                )
                self._clients[pid] = httpx.Client(
                    base_url=url, verify=context, timeout=timeout
                )
            else:
                self._clients[pid] = httpx.Client(
                    transport=httpx.HTTPTransport(uds=str(self._socket)),
                    base_url="http://keyservice",
                    timeout=timeout,
                )
        return self._clients[pid]

    def _headers(self, renew: bool = False) -> dict[str, str]:
        pipeline = acting_pipeline()
        headers = {"X-Bankplatform-Pipeline": pipeline}
        if pipeline:
            headers["X-Bankplatform-Run"] = os.environ.get(RUN_CREDENTIAL_ENV_VAR, "")
        token = os.environ.get(TOKEN_ENV_VAR)
        if token:
            headers["Authorization"] = f"Bearer {token}"
            return headers
        if renew or self._secret is None:
            self._secret = self._session_secret()
        if self._secret is None:
            msg = f"env {self.env} needs a signed token in ${TOKEN_ENV_VAR}; an admin issues one with `bankplatform token issue`"
            raise IdentityError(msg)
        headers["Authorization"] = f"Local {self._secret}"
        headers["X-Bankplatform-User"] = os.environ.get(USER_ENV_VAR, "")
        return headers

    def _session_secret(self) -> str | None:
        """The local session credential, starting the service first if this user may."""
        if not self.settings.keyservice_url and not self._reachable():
            self._start()
        try:
            return self.settings.session_file.read_text().strip()
        except OSError:
            return None

    def _reachable(self) -> bool:
        try:
            return bool(self._http().get("/healthz").status_code == 200)  # noqa: PLR2004
        except httpx.TransportError:
            return False

    def _may_start(self) -> bool:
        """Whether this OS user holds the keys itself (the single-user embedded default)."""
        if self.settings.keyservice_url:
            return False  # a service on its own host is its operator's to start
        keyring, master = self.settings.keyring, self.settings.master_key_file
        master_readable = bool(os.environ.get(MASTER_KEY_ENV_VAR)) or os.access(
            master, os.R_OK
        )
        return master_readable and os.access(keyring, os.R_OK)

    def _start(self) -> None:
        if not self._may_start():
            raise KeyServiceUnavailable(self._not_running())
        self._socket.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self._socket}.start.lock"):
            if self._reachable():
                return
            log = self._socket.with_suffix(".log")
            with log.open("ab") as stream:
                process = subprocess.Popen(  # noqa: S603 - our own module, no shell
                    [
                        sys.executable,
                        "-m",
                        "bankplatform.keyservice",
                        "--root",
                        str(self.root),
                        "--env",
                        self.env,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=stream,
                    stderr=stream,
                    start_new_session=True,
                    env={k: v for k, v in os.environ.items() if k != TOKEN_ENV_VAR},
                )
            deadline = time.monotonic() + _START_SECONDS
            while time.monotonic() < deadline:
                if self._reachable():
                    return
                if process.poll() is not None:
                    lines = log.read_text(errors="replace").strip().splitlines()
                    reason = lines[-1] if lines else f"exit status {process.returncode}"
                    msg = f"the key service of env {self.env} did not start: {reason.removeprefix('Error: ')}"
                    raise KeyServiceUnavailable(msg)
                time.sleep(0.05)
            msg = f"the key service of env {self.env} did not answer within {_START_SECONDS:.0f} s (see {log})"
            raise KeyServiceUnavailable(msg)

    def _not_running(self) -> str:
        keyring, master = self.settings.keyring, self.settings.master_key_file
        where = self.settings.keyservice_url
        if not where:
            if not os.environ.get(MASTER_KEY_ENV_VAR) and _missing(master):
                return f"no master key: set {MASTER_KEY_ENV_VAR} or run `bankplatform keys init` to create {master}"
            if _missing(keyring):
                return f"no keyring at {keyring}; run `bankplatform keys init`"
        return f"the key service of env {self.env} is not running at {where or self._socket}; its operator starts it with `bankplatform keyservice --env {self.env}`"


def expected_service_uid() -> int:
    """The OS user the key service must run as (see ``service_socket``).

    Raises:
        KeyServiceUnavailable: ``$BANKPLATFORM_KEYSERVICE_USER`` names no user.
    """
    try:
        return service_socket.expected_service_uid()
    except service_socket.ServiceUserUnknown as error:
        raise KeyServiceUnavailable(str(error)) from None


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _missing(path: Path) -> bool:
    """Known not to exist (a file this user may not even look at is not missing)."""
    try:
        path.stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


class ServiceKeys:
    """Data keys from the service, one round trip per file (``DataKeySource``)."""

    def __init__(self, client: KeyServiceClient) -> None:
        self._client = client

    def generate_data_key(self, context: bytes) -> tuple[bytes, int, bytes]:
        """A fresh data key for the dataset ``context`` names (write decision)."""
        content = self._client.call(
            "POST",
            "/v1/keys/data-key",
            {"dataset": _dataset(context), "operation": "write"},
        )
        return (
            base64.urlsafe_b64decode(content["data_key"]),
            int(content["version"]),
            base64.urlsafe_b64decode(content["wrapped"]),
        )

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        """The data key of one file (read decision)."""
        content = self._client.call(
            "POST",
            "/v1/keys/unwrap",
            {
                "dataset": _dataset(context),
                "version": version,
                "wrapped": base64.urlsafe_b64encode(wrapped).decode(),
            },
        )
        return base64.urlsafe_b64decode(content["data_key"])


class ServiceAuditLog:
    """Audit appends and reads through the service; the actor is the caller's identity."""

    def __init__(self, client: KeyServiceClient) -> None:
        self._client = client

    def append(
        self,
        action: str,
        resource: str,
        outcome: Outcome,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append a record; who acted (and on whose behalf) is the service's to say."""
        return self._client.call(
            "POST",
            "/v1/audit/records",
            {
                "action": action,
                "resource": resource,
                "outcome": outcome,
                "details": details or {},
            },
        )

    def append_many(
        self, entries: list[tuple[str, str, Outcome, dict[str, Any]]]
    ) -> tuple[int, int]:
        """Append a batch (one write and fsync in the service); returns first and last seq."""
        content = self._client.call(
            "POST",
            "/v1/audit/batch",
            {
                "records": [
                    {"action": a, "resource": r, "outcome": o, "details": d}
                    for a, r, o, d in entries
                ]
            },
        )
        return int(content["first_seq"]), int(content["last_seq"])

    def records(self, resource: str = "", tail: int = 0) -> Iterator[dict[str, Any]]:
        """Records (all for an auditor; a model's own for anyone with ``read_reports``)."""
        content = self._client.call(
            "GET", "/v1/audit/records", params={"resource": resource, "tail": tail}
        )
        yield from content["records"]

    def verify(self) -> Verdict:
        """The service's verdict on the whole log."""
        content = self._client.call("POST", "/v1/audit/verify")
        return Verdict(
            bool(content["ok"]),
            int(content["records"]),
            int(content["checkpoints"]),
            str(content["problem"]),
        )


class ServiceBundles:
    """Signed model bundles: packaged, kept and handed out by the service."""

    def __init__(self, client: KeyServiceClient) -> None:
        self._client = client

    def package(
        self, model: str, version: int, files: dict[str, bytes], lineage: dict[str, Any]
    ) -> dict[str, Any]:
        """Have the service check, sign and keep a bundle; ``digest``, ``bytes``, ``files``."""
        return self._client.call(
            "POST",
            "/v1/bundles",
            {
                "model": model,
                "version": version,
                "files": {
                    name: base64.b64encode(data).decode()
                    for name, data in files.items()
                },
                "lineage": lineage,
            },
        )

    def archive(self, digest: str) -> bytes:
        """One stored bundle as a tar (its folder and ``model.sig``)."""
        archive: bytes = self._client.call("GET", f"/v1/bundles/{digest}")["archive"]
        return archive

    def public_key(self) -> bytes:
        """The service's bundle signing public key (PEM)."""
        return str(self._client.call("GET", "/v1/bundles/public-key")["pem"]).encode()


class ServiceTokens:
    """Token issue and revocation through the service."""

    def __init__(self, client: KeyServiceClient) -> None:
        self._client = client

    def issue(self, subject: str, roles: list[str], ttl: timedelta) -> tuple[str, str]:
        """A signed token for a declared user; returns the token and its id."""
        content = self._client.call(
            "POST",
            "/v1/tokens",
            {
                "user": subject,
                "roles": roles,
                "ttl_minutes": int(ttl.total_seconds() // 60),
            },
        )
        return str(content["token"]), str(content["jti"])

    def verify(self, token: str) -> dict[str, Any]:
        """Who a client's token proves and what it may do, by the service's verdict.

        Returns:
            ``whoami`` of the token's holder: name, roles, permitted actions.

        Raises:
            IdentityError: The token is not valid; AccessDenied: the caller may
                not verify tokens (``verify_tokens``).
        """
        return self._client.call("POST", "/v1/tokens/verify", {"token": token})

    def revoke(self, jti: str, reason: str) -> None:
        """Revoke a token id."""
        self._client.call("POST", "/v1/tokens/revoke", {"jti": jti, "reason": reason})


class ServicePseudonymiser:
    """Pseudonymous tokens computed by the service; the key never leaves it."""

    def __init__(self, client: KeyServiceClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return "ServicePseudonymiser(key=<held by the key service>)"

    def tokens(self, values: pd.Series, kind: IdentifierKind) -> pd.Series:
        """Tokens for a column: each distinct value is sent once; missing stays missing."""
        import numpy as np  # noqa: PLC0415
        import pandas as pd  # noqa: PLC0415

        codes, uniques = pd.factorize(values)
        distinct = [str(v) for v in uniques]
        made: list[str | None] = []
        for start in range(0, len(distinct), _BATCH):
            content = self._client.call(
                "POST",
                "/v1/pseudonyms",
                {"kind": kind.value, "values": distinct[start : start + _BATCH]},
            )
            made.extend(content["tokens"])
        table = np.array([*made, None], dtype=object)
        return pd.Series(
            table[codes], index=values.index, name=values.name, dtype="string[pyarrow]"
        )


def principal_from(content: dict[str, Any]) -> Principal:
    """A ``whoami`` answer as a ``Principal``."""
    return Principal(
        str(content["name"]),
        frozenset(content["roles"]),
        str(content["source"]),
        content.get("on_behalf_of"),
    )


def _dataset(context: bytes) -> str:
    if not context.startswith(_CONTEXT_PREFIX):
        msg = "a data key context must name a dataset"
        raise KeyManagementError(msg)
    return context[len(_CONTEXT_PREFIX) :].decode()
