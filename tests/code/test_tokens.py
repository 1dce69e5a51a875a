"""Bearer tokens: only EdDSA tokens signed by the workspace's KMS, for our
audience and issuer, unexpired, unrevoked and with known roles are accepted."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from bankplatform.keyservice.local_kms import LocalKeyring
from bankplatform.keyservice.tokens import TokenService
from bankplatform.security.policy import AccessPolicy, IdentityError

pytestmark = pytest.mark.unit
POLICY = AccessPolicy.model_validate(
    {
        "roles": {"auditor": ["read_audit_log"], "scoring_client": ["score"]},
        "users": {"audrey": ["auditor", "scoring_client"], "sam": ["scoring_client"]},
    }
)


def _service(folder: Path, audience: str = "bankplatform") -> TokenService:
    ring = LocalKeyring(folder / "keyring.json", os.urandom(32))
    ring.initialise()
    return TokenService(ring, POLICY, folder / "revoked.json", "bankplatform", audience)


@pytest.fixture
def tokens(tmp_path: Path) -> TokenService:
    return _service(tmp_path)


def _rejection(tokens: TokenService, token: str) -> str:
    with pytest.raises(IdentityError) as caught:
        tokens.verify(token)
    return str(caught.value)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_token_names_its_subject_and_roles(tokens: TokenService) -> None:
    token, jti = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    principal = tokens.verify(token)
    assert (principal.name, principal.roles, principal.source) == (
        "audrey",
        frozenset({"auditor"}),
        "token",
    )
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA" and header["kid"] == "signing-v1"
    assert set(claims) == {"iss", "aud", "sub", "roles", "iat", "exp", "jti"}
    assert claims["jti"] == jti and claims["exp"] - claims["iat"] == 300


def test_expired_token_is_rejected(tokens: TokenService) -> None:
    token, _ = tokens.issue("audrey", ["auditor"], timedelta(seconds=1))
    time.sleep(2.1)
    assert _rejection(tokens, token) == "token rejected: expired"


def test_a_token_signed_by_another_kms_is_rejected(
    tokens: TokenService, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    forged, _ = _service(tmp_path / "other").issue(
        "audrey", ["auditor"], timedelta(minutes=5)
    )
    assert _rejection(tokens, forged) == "token rejected: signature does not verify"


def test_alg_none_and_hmac_confusion_are_rejected(tokens: TokenService) -> None:
    token, _ = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = (
        f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'signing-v1'})}.{_b64(claims)}."
    )
    assert "algorithm not allowed" in _rejection(tokens, unsigned)
    hmac_token = jwt.encode(
        claims,
        "public-key-as-secret-0123456789abcdef",
        algorithm="HS256",
        headers={"kid": "signing-v1"},
    )
    assert "algorithm not allowed" in _rejection(tokens, hmac_token)


def test_wrong_audience_is_rejected(tmp_path: Path) -> None:
    service = _service(tmp_path)
    token, _ = service.issue("audrey", ["auditor"], timedelta(minutes=5))
    elsewhere = TokenService(
        service._kms, POLICY, tmp_path / "revoked.json", "bankplatform", "another-app"
    )
    assert _rejection(elsewhere, token) == "token rejected: wrong audience"


def test_a_revoked_token_is_rejected(tokens: TokenService) -> None:
    token, jti = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    other, _ = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    tokens.revoke(jti, "laptop lost")
    assert _rejection(tokens, token) == "token rejected: revoked"
    assert tokens.verify(other).name == "audrey"
    assert tokens.revoked()[jti]["reason"] == "laptop lost"


def test_unknown_roles_are_refused_at_issue_and_at_verify(
    tokens: TokenService, tmp_path: Path
) -> None:
    with pytest.raises(IdentityError, match="unknown role\\(s\\) superuser"):
        tokens.issue("audrey", ["superuser"], timedelta(minutes=5))
    token, _ = tokens.issue("audrey", ["scoring_client"], timedelta(minutes=5))
    narrower = AccessPolicy.model_validate(
        {"roles": {"auditor": ["read_audit_log"]}, "users": {"audrey": ["auditor"]}}
    )
    strict = TokenService(
        tokens._kms, narrower, tmp_path / "revoked.json", "bankplatform", "bankplatform"
    )
    assert _rejection(strict, token) == "token rejected: unknown role(s) scoring_client"


def test_a_tampered_payload_is_rejected(tokens: TokenService) -> None:
    token, _ = tokens.issue("audrey", ["scoring_client"], timedelta(minutes=5))
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["roles"] = ["auditor"]
    assert (
        _rejection(tokens, f"{header}.{_b64(claims)}.{signature}")
        == "token rejected: signature does not verify"
    )


def test_tokens_are_bound_to_declared_users_and_their_roles(
    tokens: TokenService, tmp_path: Path
) -> None:
    """Finding 6: subject and roles are checked against access.users, at issue and
    at every verification (a removed user's token stops working)."""
    with pytest.raises(IdentityError, match="'mallory' is not a user declared"):
        tokens.issue("mallory", ["auditor"], timedelta(minutes=5))
    with pytest.raises(IdentityError, match="'../../x' is not a user declared"):
        tokens.issue("../../x", ["auditor"], timedelta(minutes=5))
    with pytest.raises(
        IdentityError, match="user sam does not hold role\\(s\\) auditor"
    ):
        tokens.issue("sam", ["auditor"], timedelta(minutes=5))
    token, _ = tokens.issue("sam", ["scoring_client"], timedelta(minutes=5))
    without_sam = AccessPolicy.model_validate(
        {"roles": POLICY.model_dump()["roles"], "users": {"audrey": ["auditor"]}}
    )
    later = TokenService(
        tokens._kms,
        without_sam,
        tmp_path / "revoked.json",
        "bankplatform",
        "bankplatform",
    )
    assert (
        _rejection(later, token)
        == "token rejected: 'sam' is not a user declared in security.yml (access.users)"
    )


def test_no_token_outlives_the_maximum(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "keyring.json", os.urandom(32))
    ring.initialise()
    capped = TokenService(
        ring,
        POLICY,
        tmp_path / "r.json",
        "bankplatform",
        "bankplatform",
        timedelta(hours=8),
    )
    with pytest.raises(IdentityError, match="longer than the maximum of 480"):
        capped.issue("audrey", ["auditor"], timedelta(minutes=5_256_000))
    assert capped.issue("audrey", ["auditor"], timedelta(hours=8))[1]
    # A correctly signed token made to live 10 years (by a service with a longer
    # maximum, or the key used outside `issue`) is refused at verification too.
    lenient = TokenService(
        ring,
        POLICY,
        tmp_path / "r.json",
        "bankplatform",
        "bankplatform",
        timedelta(days=3660),
    )
    decade, _ = lenient.issue("audrey", ["auditor"], timedelta(days=3650))
    assert lenient.verify(decade).name == "audrey"
    assert _rejection(capped, decade) == (
        "token rejected: made to live 5,256,000 minutes, longer than the maximum "
        "of 480 (security.token_max_ttl_minutes)"
    )
    eight_hours, _ = lenient.issue("audrey", ["auditor"], timedelta(hours=8))
    assert capped.verify(eight_hours).name == "audrey"


def test_revocation_takes_token_ids_only_and_its_list_is_signed(
    tokens: TokenService, tmp_path: Path
) -> None:
    with pytest.raises(IdentityError, match="is not a token id"):
        tokens.revoke("../../etc/passwd", "no")
    token, jti = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    other, _ = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    tokens.revoke(jti, "laptop lost")
    # Someone with write access to the file un-revokes the token.
    listed = json.loads((tmp_path / "revoked.json").read_text())
    listed["revoked"] = {}
    (tmp_path / "revoked.json").write_text(json.dumps(listed))
    assert "is not signed by the key service" in _rejection(tokens, token)
    assert "is not signed by the key service" in _rejection(tokens, other)


def test_the_signing_key_rotates_and_kid_selects_the_verifying_key(
    tokens: TokenService,
) -> None:
    before, _ = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    assert tokens._kms.rotate_signing_key() == 2  # type: ignore[attr-defined]
    after, _ = tokens.issue("audrey", ["auditor"], timedelta(minutes=5))
    assert jwt.get_unverified_header(after)["kid"] == "signing-v2"
    assert tokens.verify(before).name == tokens.verify(after).name == "audrey"
    header, payload, signature = after.split(".")
    relabelled = f"{_b64({'alg': 'EdDSA', 'typ': 'JWT', 'kid': 'signing-v1'})}.{payload}.{signature}"
    assert _rejection(tokens, relabelled) == "token rejected: signature does not verify"
    unknown = f"{_b64({'alg': 'EdDSA', 'typ': 'JWT', 'kid': 'signing-v9'})}.{payload}.{signature}"
    assert (
        _rejection(tokens, unknown) == "token rejected: unknown signing key signing-v9"
    )
