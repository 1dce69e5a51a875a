"""Run the key service on a Unix socket, or with TLS on its own host (uvicorn),
and stop it when idle.

The socket is created here, not by uvicorn (which would make it mode 666): mode
600 in the single-user embedded default, 660 with ``socket_group`` so that the
client users of a shared host, and only they, can connect. Every call is still
authenticated; the mode only narrows who may knock.
"""

from __future__ import annotations

import grp
import os
import socket
import threading
import time
from pathlib import Path

import uvicorn

from bankplatform.keyservice.app import create_app
from bankplatform.keyservice.authority import KeyAuthority
from bankplatform.security.service_socket import replaceable_by_others

IDLE_ENV_VAR = "BANKPLATFORM_KEYSERVICE_IDLE_SECONDS"


def serve(
    root: Path,
    env: str,
    socket_group: str | None = None,
    idle_seconds: float | None = None,
) -> None:
    """Serve until stopped, idle for ``idle_seconds``, or the keyring is removed."""
    authority = KeyAuthority(root, env)
    settings = authority.settings
    path = settings.keyservice_socket
    app = create_app(authority)
    if settings.keyservice_url:  # on its own host: TLS over TCP
        host, port = settings.keyservice_url.removeprefix("https://").rsplit(":", 1)
        config = uvicorn.Config(
            app,
            host=host,
            port=int(port),
            ssl_certfile=str(settings.keyservice_tls_cert),
            ssl_keyfile=str(settings.keyservice_tls_key),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        listeners = None
    else:
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off"
        )
        listeners = [_bind(path, socket_group, strict=authority.production)]
    # Only once this process holds the socket: a second service refused there
    # (two clients started one each) must not replace the running one's credential.
    if authority.local_sessions:
        authority.write_session_file()
    server = uvicorn.Server(config)
    idle = idle_seconds if idle_seconds is not None else _idle_from_env()
    watcher = threading.Thread(
        target=_watch, args=(server, authority, idle), daemon=True
    )
    watcher.start()
    try:
        server.run(sockets=listeners)
    finally:
        authority.audit.sign_head()
        if listeners:
            path.unlink(missing_ok=True)


def _bind(path: Path, group: str | None, *, strict: bool) -> socket.socket:
    """Listen on ``path``. ``strict`` (production): refuse a folder that another
    user could rename, putting their own socket in the service's place."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        msg = f"cannot make the socket folder {path.parent} ({error.strerror}): the host's administrators create it for the key service's user (see docs/operations.md)"
        raise SystemExit(msg) from None
    folder = path.parent.stat()
    if folder.st_uid != os.getuid() and not group:
        msg = f"the socket folder {path.parent} belongs to another user"
        raise SystemExit(msg)
    if strict and (problem := replaceable_by_others(path.parent, os.getuid())):
        msg = f"refusing to listen on {path}: {problem}, so another user could put their own socket there (production: a folder like /run/bankplatform/<workspace id>/, see docs/operations.md)"
        raise SystemExit(msg)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a dead service's socket
        else:
            probe.close()
            msg = f"a key service is already listening on {path}"
            raise SystemExit(msg)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    if group:
        try:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        except (KeyError, PermissionError):
            path.unlink()
            msg = f"cannot give the socket to group {group}: the group must exist and the service's OS user must belong to it"
            raise SystemExit(msg) from None
        path.chmod(0o660)
    listener.listen(128)
    return listener


def _idle_from_env() -> float:
    return float(os.environ.get(IDLE_ENV_VAR, "900"))


def _watch(server: uvicorn.Server, authority: KeyAuthority, idle: float) -> None:
    seen, count = time.monotonic(), -1
    while not server.should_exit:
        time.sleep(0.5)
        authority.sign_when_idle()
        state = server.server_state
        if state.total_requests != count or state.connections:
            seen, count = time.monotonic(), state.total_requests
        gone = not authority.settings.keyring.is_file()  # the workspace was removed
        if gone or (idle > 0 and time.monotonic() - seen > idle):
            server.should_exit = True
