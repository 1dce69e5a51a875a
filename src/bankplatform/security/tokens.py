"""Signed bearer tokens (JWT, EdDSA) for people, schedulers and scoring clients.

Tokens are made and checked with PyJWT. They are signed by the KMS's Ed25519
signing key (the private key never leaves the KMS: PyJWT is given an algorithm
that asks the KMS to sign) and verified with its public key; only ``EdDSA`` is
accepted, so ``alg: none`` and HMAC-confusion tokens fail. Claims: ``iss``,
``aud``, ``sub``, ``roles``, ``iat``, ``exp``, ``jti``; a revoked ``jti`` (kept in
a revocation list file) is refused.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from filelock import FileLock
from jwt.algorithms import Algorithm

from bankplatform.security.kms import KeyManagementService
from bankplatform.security.policy import AccessPolicy, IdentityError, Principal

ALGORITHM = "EdDSA"
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]


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
    ) -> None:
        self._kms = kms
        self._policy = policy
        self._revocation_list = revocation_list
        self._issuer = issuer
        self._audience = audience
        self._signer = jwt.PyJWS(algorithms=[])
        self._signer.register_algorithm(ALGORITHM, _KmsSigner())

    def issue(self, subject: str, roles: list[str], ttl: timedelta) -> tuple[str, str]:
        """A signed token for ``subject`` with ``roles``.

        Returns:
            The token and its ``jti``.

        Raises:
            IdentityError: A role is not in security.yml, or the lifetime is not positive.
        """
        self._check_roles(roles)
        if ttl <= timedelta(0):
            raise IdentityError("token lifetime must be positive")
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
        _, public = self._kms.public_key()
        try:
            claims = jwt.decode(
                token,
                key=Ed25519PublicKey.from_public_bytes(public),
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
        if claims["jti"] in self.revoked():
            raise IdentityError("token rejected: revoked")
        roles = claims.get("roles")
        if not isinstance(roles, list) or not roles:
            raise IdentityError("token rejected: no roles claim")
        self._check_roles(roles, prefix="token rejected: ")
        return Principal(str(claims["sub"]), frozenset(roles), "token")

    def revoke(self, jti: str, reason: str) -> None:
        """Add ``jti`` to the revocation list (atomic rewrite under a file lock)."""
        self._revocation_list.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self._revocation_list}.lock"):
            revoked = self.revoked()
            revoked[jti] = {
                "revoked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "reason": reason,
            }
            temporary = self._revocation_list.with_suffix(".tmp")
            temporary.write_text(json.dumps(revoked, indent=2, sort_keys=True))
            os.replace(temporary, self._revocation_list)

    def revoked(self) -> dict[str, Any]:
        """The revocation list: ``jti`` -> when and why."""
        if not self._revocation_list.is_file():
            return {}
        content: dict[str, Any] = json.loads(self._revocation_list.read_text())
        return content

    def _check_roles(self, roles: list[str], prefix: str = "") -> None:
        unknown = sorted(set(roles) - set(self._policy.roles))
        if unknown:
            msg = f"{prefix}unknown role(s) {', '.join(unknown)}"
            raise IdentityError(msg)
