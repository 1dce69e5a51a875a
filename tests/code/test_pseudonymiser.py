"""The pseudonymiser: keyed tokens per identifier kind, age bands at their edges,
postcode areas, and the key service making the same tokens without handing out its key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pandas as pd
import pytest

from bankplatform.keyservice.pseudonyms import Pseudonymiser
from bankplatform.pipelines.ingestion.pseudonymisation import age_bands, postcode_areas
from bankplatform.security.pseudonyms import IdentifierKind
from bankplatform.security.runtime import WorkspaceSecurity, acting_in_run
from tests.conftest import workspace_keyring

pytestmark = pytest.mark.unit


def test_tokens_are_keyed_stable_and_prefixed_per_kind() -> None:
    key = secrets.token_bytes(32)
    one, same, other = (
        Pseudonymiser(key),
        Pseudonymiser(key),
        Pseudonymiser(secrets.token_bytes(32)),
    )
    token = one.token("C00000042", IdentifierKind.CUSTOMER)
    assert token == same.token("C00000042", IdentifierKind.CUSTOMER)
    assert token != other.token("C00000042", IdentifierKind.CUSTOMER)
    assert token.startswith("cus_") and len(token) == 4 + 32
    as_account = one.token("C00000042", IdentifierKind.ACCOUNT)
    # Another kind: another prefix and another HMAC domain, not just a new prefix.
    assert as_account.startswith("acc_") and as_account[4:] != token[4:]
    assert repr(one) == "Pseudonymiser(key=<from the KMS>)"  # safe in logs


def test_one_person_written_two_ways_gets_one_token() -> None:
    maker = Pseudonymiser(secrets.token_bytes(32))
    assert maker.token(" Ada@Example.COM ", IdentifierKind.EMAIL) == maker.token(
        "ada@example.com", IdentifierKind.EMAIL
    )
    assert maker.token("07700 900 123", IdentifierKind.PHONE) == maker.token(
        "07700900123", IdentifierKind.PHONE
    )
    assert maker.token("ab 12 34 56 c", IdentifierKind.NATIONAL_ID) == maker.token(
        "AB123456C", IdentifierKind.NATIONAL_ID
    )


def test_a_column_keeps_missing_values_missing() -> None:
    maker = Pseudonymiser(secrets.token_bytes(32))
    tokens = maker.tokens(pd.Series(["C1", None, "C1"]), IdentifierKind.CUSTOMER)
    assert tokens.isna().tolist() == [False, True, False]
    assert tokens[0] == tokens[2] == maker.token("C1", IdentifierKind.CUSTOMER)


@pytest.mark.parametrize(
    ("born", "band"),
    [
        ("2008-06-30", "18-24"),  # 18th birthday on as_of
        ("2008-07-01", "<18"),  # the day before it
        ("2001-06-30", "25-34"),  # 25th birthday on as_of
        ("2001-07-01", "18-24"),
        ("1961-06-30", "65+"),  # 65th birthday on as_of
        ("1961-07-01", "55-64"),
        ("2010-01-01", "<18"),
    ],
)
def test_age_bands_at_their_edges(born: str, band: str) -> None:
    assert age_bands(pd.Series([born]), "2026-06-30").tolist() == [band]


def test_a_leap_day_birthday_counts_from_the_first_of_march() -> None:
    bands = age_bands(pd.Series(["2008-02-29", "2008-02-29"]), "2026-02-28")
    assert bands.tolist() == ["<18", "<18"]
    assert age_bands(pd.Series(["2008-02-29"]), "2026-03-01").tolist() == ["18-24"]


def test_postcode_areas_are_the_leading_letters() -> None:
    areas = postcode_areas(
        pd.Series(["SW1A 1AA", "m1 1ae", "B33 8TH", "EC1A 1BB", None])
    )
    assert areas.iloc[:4].tolist() == ["SW", "M", "B", "EC"]
    assert pd.isna(areas.iloc[4])


def test_the_key_service_makes_the_same_tokens_without_handing_out_its_key(
    workspace_security: WorkspaceSecurity, service_workspace: Path
) -> None:
    values = pd.Series(["C00000001", "C00000002", None, "C00000001"])
    with acting_in_run("ingestion"):
        made = workspace_security.pseudonymiser().tokens(
            values, IdentifierKind.CUSTOMER
        )
    local = Pseudonymiser(workspace_keyring(service_workspace).pseudonymisation_key())
    assert made.tolist()[:2] == [
        local.token("C00000001", IdentifierKind.CUSTOMER),
        local.token("C00000002", IdentifierKind.CUSTOMER),
    ]
    assert pd.isna(made[2]) and made[3] == made[0]
