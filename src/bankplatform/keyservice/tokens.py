"""Signed bearer tokens (JWT, EdDSA) for people, schedulers and scoring clients.

Tokens are made and checked with PyJWT. They are signed by the KMS's Ed25519
signing key (the private key never leaves the KMS: PyJWT is given an algorithm
that asks the KMS to sign) and verified with its public key; only ``EdDSA`` is
accepted, so ``alg: none`` and HMAC-confusion tokens fail. Claims: ``iss``,
``aud``, ``sub``, ``roles``, ``iat``, ``exp``, ``jti``; a revoked ``jti`` (kept in
a revocation list signed by the same KMS) is refused. Tokens are bound to
``access.users`` when verified: the subject must still be declared and the token's
roles must still be among the user's, so removing a user or a role ends their
tokens at once. The ``kid`` header names the signing key version that verifies it.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from filelock import FileLock
from jwt.algorithms import Algorithm

from bankplatform.security.kms import KeyManagementError, KeyManagementService
from bankplatform.security.policy import AccessPolicy, IdentityError, Principal

ALGORITHM = "EdDSA"
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]
_CLOCK_SKEW_SECONDS = 60
_JTI = re.compile(r"^[0-9a-f]{32}$")
_KID = re.compile(r"^signing-v([0-9]{1,6})$")


class _KmsSigner(Algorithm):
    """PyJWT algorithm whose 'key' is the KMS: signing happens inside it."""

    def prepare_key(self, key: Any) -> Any:
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        return bytes(key.sign(msg)[1])

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        raise NotImplementedError  # verification uses PyJWT's own EdDSA

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError


class TokenService:
    """Issues, verifies and revokes bearer tokens for one workspace."""

    def __init__(
        self,
        kms: KeyManagementService,
        policy: AccessPolicy,
        revocation_list: Path,
        issuer: str,
        audience: str,
        max_ttl: timedelta = timedelta(days=1),
    ) -> None:
        self._kms = kms
        self._max_ttl = max_ttl
        self.policy = policy
        self._revocation_list = revocation_list
        self._issuer = issuer
        self._audience = audience
        # Verification runs on every request to the key service: a signing key
        # version never changes, and the revocation list is re-read only when
        # its file changes (checked by stat on each call).
        self._public_keys: dict[int, Ed25519PublicKey] = {}
        self._revoked: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._signer = jwt.PyJWS(algorithms=[])
        self._signer.register_algorithm(ALGORITHM, _KmsSigner())

    def issue(self, subject: str, roles: list[str], ttl: timedelta) -> tuple[str, str]:
        """A signed token for ``subject`` with ``roles``.

        Returns:
            The token and its ``jti``.

        Raises:
            IdentityError: The subject is not a declared user, a role is not
                theirs (service roles never are), or the lifetime is not
                positive or longer than the maximum.
        """
        self._check_roles(roles)
        self._check_binding(subject, roles)
        if ttl <= timedelta(0):
            raise IdentityError("token lifetime must be positive")
        if ttl > self._max_ttl:
            minutes = int(self._max_ttl.total_seconds() // 60)
            msg = f"token lifetime {int(ttl.total_seconds() // 60)} minutes is longer than the maximum of {minutes} (security.token_max_ttl_minutes)"
            raise IdentityError(msg)
        now = datetime.now(UTC)
        jti = uuid.uuid4().hex
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "roles": sorted(roles),
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": jti,
        }
        version, _ = self._kms.public_key()
        token = self._signer.encode(
            json.dumps(claims, separators=(",", ":")).encode(),
            key=self._kms,  # type: ignore[arg-type]  # _KmsSigner takes the KMS
            algorithm=ALGORITHM,
            headers={"kid": f"signing-v{version}", "typ": "JWT"},
        )
        return token, jti

    def verify(self, token: str) -> Principal:
        """The principal a token names, if it is valid.

        Raises:
            IdentityError: Expired, badly signed, wrong algorithm, issuer or
                audience, missing claims, revoked, or naming an unknown role.
        """
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except jwt.InvalidTokenError as error:
            msg = f"token rejected: {error}"
            raise IdentityError(msg) from None
        public = self._public_key(str(kid))
        try:
            claims = jwt.decode(
                token,
                key=public,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise IdentityError("token rejected: expired") from None
        except jwt.InvalidAudienceError:
            raise IdentityError("token rejected: wrong audience") from None
        except jwt.InvalidIssuerError:
            raise IdentityError("token rejected: wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise IdentityError("token rejected: signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise IdentityError(
                f"token rejected: algorithm not allowed (only {ALGORITHM})"
            ) from None
        except jwt.InvalidTokenError as error:
            msg = f"token rejected: {error}"
            raise IdentityError(msg) from None
        self._check_lifetime(claims)
        if claims["jti"] in self.revoked():
            raise IdentityError("token rejected: revoked")
        roles = claims.get("roles")
        if not isinstance(roles, list) or not roles:
            raise IdentityError("token rejected: no roles claim")
        self._check_roles(roles, prefix="token rejected: ")
        self._check_binding(str(claims["sub"]), roles, prefix="token rejected: ")
        return Principal(str(claims["sub"]), frozenset(roles), "token")

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """The maximum lifetime holds at verification too: a correctly signed token
        made for longer (by an older setting, or a key used outside ``issue``) is
        refused, and so is one issued in the future."""
        try:
            issued, expires = int(claims["iat"]), int(claims["exp"])
        except (TypeError, ValueError):
            raise IdentityError("token rejected: iat and exp must be numbers") from None
        if issued > datetime.now(UTC).timestamp() + _CLOCK_SKEW_SECONDS:
            raise IdentityError("token rejected: issued in the future")
        allowed = self._max_ttl.total_seconds()
        if expires - issued > allowed:
            msg = (
                f"token rejected: made to live {(expires - issued) // 60:,} minutes, longer than the "
                f"maximum of {int(allowed // 60):,} (security.token_max_ttl_minutes)"
            )
            raise IdentityError(msg)

    def _public_key(self, kid: str) -> Ed25519PublicKey:
        match = _KID.match(kid)
        if match is None:
            raise IdentityError("token rejected: no signing key id (kid)")
        version = int(match.group(1))
        if version not in self._public_keys:
            try:
                raw = self._kms.signing_public_key(version)
            except KeyManagementError:
                msg = f"token rejected: unknown signing key {kid}"
                raise IdentityError(msg) from None
            self._public_keys[version] = Ed25519PublicKey.from_public_bytes(raw)
        return self._public_keys[version]

    def _check_binding(self, subject: str, roles: list[str], prefix: str = "") -> None:
        if subject not in self.policy.users:
            msg = f"{prefix}{subject!r} is not a user declared in security.yml (access.users)"
            raise IdentityError(msg)
        foreign = sorted(set(roles) - set(self.policy.users[subject]))
        if foreign:
            msg = f"{prefix}user {subject} does not hold role(s) {', '.join(foreign)}"
            raise IdentityError(msg)

    def revoke(self, jti: str, reason: str) -> None:
        """Add ``jti`` to the signed revocation list (atomic rewrite under a file lock).

        Raises:
            IdentityError: ``jti`` is not a token id (32 hexadecimal digits).
        """
        if not _JTI.match(jti):
            msg = f"{jti[:80]!r} is not a token id (32 hexadecimal digits, from `token issue`)"
            raise IdentityError(msg)
        self._revocation_list.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self._revocation_list}.lock"):
            revoked = dict(self.revoked())
            revoked[jti] = {
                "revoked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "reason": reason[:500],
            }
            version, signature = self._kms.sign(_canonical(revoked))
            content = {
                "revoked": revoked,
                "key_version": version,
                "signature": signature.hex(),
            }
            temporary = self._revocation_list.with_suffix(".tmp")
            temporary.write_text(json.dumps(content, indent=2, sort_keys=True))
            os.replace(temporary, self._revocation_list)

    def revoked(self) -> dict[str, Any]:
        """The revocation list: ``jti`` -> when and why.

        Raises:
            IdentityError: The list's signature does not verify (edited without the
                key): every token is refused until an admin restores it.
        """
        try:
            stat = self._revocation_list.stat()
        except FileNotFoundError:
            return {}
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._revoked is not None and self._revoked[0] == identity:
            return self._revoked[1]
        try:
            content = json.loads(self._revocation_list.read_text())
            revoked: dict[str, Any] = content["revoked"]
            signed = self._kms.verify(
                int(content["key_version"]),
                _canonical(revoked),
                bytes.fromhex(content["signature"]),
            )
        except (ValueError, KeyError, TypeError):
            signed = False
        if not signed:
            msg = f"token rejected: the revocation list {self._revocation_list} is not signed by the key service (edited?)"
            raise IdentityError(msg)
        self._revoked = (identity, revoked)
        return revoked

    def _check_roles(self, roles: list[str], prefix: str = "") -> None:
        unknown = sorted(set(roles) - set(self.policy.roles))
        if unknown:
            msg = f"{prefix}unknown role(s) {', '.join(unknown)}"
            raise IdentityError(msg)


def _canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
