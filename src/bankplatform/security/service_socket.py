"""Where the key service listens, and whether a client could replace it there.

A Unix socket is only as safe as the folders above it: whoever may write (and so
rename) any of them can move the service's socket aside and listen in its place.
On a shared host the socket's folder has only parents that root or the service's
OS user own and nobody else may write (``/run/bankplatform/<workspace id>/``, made
by the host's administrators, e.g. systemd's ``RuntimeDirectory=``); a production
service refuses any other place. A single-user workstation is one trust domain:
the embedded default keeps the socket in the workspace's key folder. Clients
check who listens (``SO_PEERCRED``) before a credential goes out either way.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import tempfile
from pathlib import Path

from bankplatform.errors import BankplatformError

KEYSERVICE_USER_ENV_VAR = "BANKPLATFORM_KEYSERVICE_USER"
_SOCKET_PATH_LIMIT = 100  # bytes; Linux allows 107


class ServiceUserUnknown(BankplatformError):
    """``$BANKPLATFORM_KEYSERVICE_USER`` names no user of this host."""


def expected_service_uid() -> int:
    """The OS user the key service runs as: ``$BANKPLATFORM_KEYSERVICE_USER`` (set
    by the host's administrators), else this process's own (one trust domain).

    Raises:
        ServiceUserUnknown: The variable names no user of this host.
    """
    name = os.environ.get(KEYSERVICE_USER_ENV_VAR, "").strip()
    if not name:
        return os.getuid()
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        msg = f"${KEYSERVICE_USER_ENV_VAR} names {name!r}, not a user of this host"
        raise ServiceUserUnknown(msg) from None


def short_socket(path: Path) -> Path:
    """``path``, or when it is too long for a Unix socket a short one derived from
    it, in the *service user's* folder of the temporary directory (the service and
    its clients, different OS users, compute the same path; a client's own folder
    would be one it can serve itself)."""
    if len(os.fsencode(path)) < _SOCKET_PATH_LIMIT:
        return path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:24]
    try:
        uid = expected_service_uid()
    except ServiceUserUnknown:
        uid = os.getuid()  # the client's listener check names the problem
    return Path(tempfile.gettempdir()) / f"bankplatform-{uid}" / f"{digest}.sock"


def replaceable_by_others(folder: Path, service_uid: int) -> str | None:
    """Why another user could rename ``folder`` or one of its parents (and so put
    their own socket in the service's place), or ``None``.

    A folder is safe when root or the service's user owns it and neither its group
    nor others may write it; a world-writable folder with the sticky bit (``/tmp``)
    is safe too, for entries the service's user made.
    """
    for current in [folder, *folder.parents]:
        try:
            info = current.stat()
        except FileNotFoundError:
            continue  # made by the service itself, mode 0700
        if info.st_uid not in (0, service_uid):
            return f"{current} belongs to uid {info.st_uid}, neither root nor the key service's user"
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and not info.st_mode & stat.S_ISVTX:
            return f"{current} is writable by its group or by others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None
