"""Proof that the process on a plain-HTTP port is the scoring service this
workspace started, before a client sends it a bearer token.

With TLS the client verifies the service's certificate against the workspace's
CA. On plain loopback HTTP (a workstation, the demo) anything may hold the port:
another program, or a stale server. When ``bankplatform serve`` has bound its
port it writes a random key, readable by its OS user only, to
``.bankplatform-run/scoring-<port>.key``; ``GET /healthz?challenge=<hex>``
answers ``HMAC-SHA256(key, challenge:port)``. A client reads the key, sends a
fresh challenge and sends no token unless the proof matches. Whoever can read
the key is the service's own user: one trust domain, as documented.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

RUN_FOLDER = ".bankplatform-run"
CHALLENGE_PATTERN = r"^[0-9a-f]{32,128}$"


def key_file(root: Path, port: int) -> Path:
    """Where the service listening on ``port`` keeps its proof key."""
    return root / RUN_FOLDER / f"scoring-{port}.key"


def write_listener_key(root: Path, port: int) -> bytes:
    """A new key for the service now bound to ``port`` (mode 600, replaced
    atomically: a client never reads half a key)."""
    key = secrets.token_bytes(32)
    path = key_file(root, port)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(key.hex())
    temporary.replace(path)
    return key


def read_listener_key(root: Path, port: int) -> bytes | None:
    """The key of the service this workspace started on ``port``, if any."""
    return read_key_file(key_file(root, port))


def read_key_file(path: Path) -> bytes | None:
    """The key in ``path``, if there is one."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def remove_listener_key(root: Path, port: int, key: bytes) -> None:
    """Remove the key at shutdown, unless a newer service replaced it."""
    if read_listener_key(root, port) == key:
        key_file(root, port).unlink(missing_ok=True)


def listener_proof(key: bytes, challenge: str, port: int) -> str:
    """The answer to ``challenge`` of the service holding ``key`` on ``port``."""
    return hmac.new(key, f"{challenge}:{port}".encode(), hashlib.sha256).hexdigest()


def new_challenge() -> str:
    """A fresh challenge (hex)."""
    return secrets.token_hex(16)
