"""Where the key service listens: a folder no other user can rename, and one socket
path that the service and its clients (other OS users) compute alike."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from bankplatform.keyservice.server import _bind
from bankplatform.security.service_socket import (
    ServiceUserUnknown,
    expected_service_uid,
    replaceable_by_others,
    short_socket,
)
from bankplatform.security.settings import SecuritySettings
from tests.conftest import make_workspace

pytestmark = pytest.mark.unit


def test_a_folder_others_may_write_is_named_and_refused_in_production(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    socket_folder = shared / "ws"
    socket_folder.mkdir(mode=0o700)
    shared.chmod(0o775)  # a team folder: its group can rename ws/ and plant its own
    me = os.getuid()
    assert replaceable_by_others(socket_folder, me) == (
        f"{shared} is writable by its group or by others (mode 0775)"
    )
    with pytest.raises(SystemExit) as refused:
        _bind(socket_folder / "keys.sock", None, strict=True)
    assert str(refused.value) == (
        f"refusing to listen on {socket_folder / 'keys.sock'}: {shared} is writable by "
        "its group or by others (mode 0775), so another user could put their own "
        "socket there (production: a folder like /run/bankplatform/<workspace id>/, "
        "see docs/operations.md)"
    )
    assert not (socket_folder / "keys.sock").exists()
    # The developer domain (one trust domain) still listens there.
    listener = _bind(socket_folder / "keys.sock", None, strict=False)
    listener.close()
    # Sticky and world-writable (/tmp) is fine: nobody renames another's entry.
    shared.chmod(0o1777)
    assert replaceable_by_others(socket_folder, me) is None
    shared.chmod(0o755)
    assert replaceable_by_others(socket_folder, me) is None
    # A folder someone else owns, even read-only, is theirs to rename.
    stranger = me + 4242
    assert replaceable_by_others(socket_folder, stranger) == (
        f"{socket_folder} belongs to uid {me}, neither root nor the key service's user"
        if me != 0
        else None
    )


def test_the_short_socket_is_in_the_service_users_folder_not_the_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = tmp_path / ("w" * 120) / "keyservice-test.sock"
    monkeypatch.delenv("BANKPLATFORM_KEYSERVICE_USER", raising=False)
    mine = short_socket(long)
    assert mine.parent == Path(tempfile.gettempdir()) / f"bankplatform-{os.getuid()}"
    assert len(os.fsencode(mine)) < 100
    assert short_socket(tmp_path / "k.sock") == tmp_path / "k.sock"
    # A client whose host names the service user computes the service's path.
    nobody = pwd.getpwnam("nobody").pw_uid
    monkeypatch.setenv("BANKPLATFORM_KEYSERVICE_USER", "nobody")
    assert expected_service_uid() == nobody
    theirs = short_socket(long)
    assert theirs == mine.parent.with_name(f"bankplatform-{nobody}") / mine.name
    monkeypatch.setenv("BANKPLATFORM_KEYSERVICE_USER", "no-such-user-here")
    with pytest.raises(ServiceUserUnknown, match="not a user of this host"):
        expected_service_uid()


def test_the_workspace_id_names_the_production_socket_folder(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "workspace")
    settings = SecuritySettings(
        keyservice_socket=Path("/run/bankplatform/{workspace}/keyservice-{env}.sock")
    ).anchored(root, "prod")
    assert settings.keyservice_socket == Path(
        "/run/bankplatform/retail-credit-default/keyservice-prod.sock"
    )
