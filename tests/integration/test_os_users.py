"""The trust boundary between operating-system users.

The key service runs as ``bpkeys``, the only user that can read ``.bankplatform/``
(master key, keyring, audit log). Clients run as ``bpclient`` and hold bearer
tokens only. With a scheduler's token the pipelines run end to end; with a data
scientist's token no route gives raw PII, the keyring or the audit log. CI runs as
root, so the test creates both users (``useradd``); elsewhere it is skipped.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, command_env, make_workspace

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(map(shutil.which, ("useradd", "runuser"))),
        reason="needs root to create the two OS users (CI runs as root)",
    ),
]
SERVICE_USER, CLIENT_USER, CLIENT_GROUP = "bpkeys", "bpclient", "bpclients"


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _ensure_users() -> None:
    try:
        grp.getgrnam(CLIENT_GROUP)
    except KeyError:
        subprocess.run([_tool("groupadd"), CLIENT_GROUP], check=True)
    # Both belong to the socket's group: the service gives the socket to it.
    for user in (SERVICE_USER, CLIENT_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                [
                    _tool("useradd"),
                    "-M",
                    "-s",
                    "/usr/sbin/nologin",
                    "-G",
                    CLIENT_GROUP,
                    user,
                ],
                check=True,
            )
        subprocess.run([_tool("usermod"), "-aG", CLIENT_GROUP, user], check=True)


def _chown(path: Path, user: str, group: str | None = None) -> None:
    subprocess.run(
        [_tool("chown"), "-R", f"{user}:{group or user}", str(path)], check=True
    )


class Host:
    """One workspace shared by the two users, and a way to run commands as each."""

    def __init__(self, folder: Path) -> None:
        self.root = make_workspace(folder / "workspace")
        self.homes = {u: folder / f"home-{u}" for u in (SERVICE_USER, CLIENT_USER)}
        self.run_dir = folder / "run"
        self.run_dir.mkdir()
        security = yaml.safe_load((REPO / "conf" / "base" / "security.yml").read_text())
        security["security"]["keyservice_socket"] = str(self.run_dir / "keys-test.sock")
        # The tracking store here is the client's SQLite file, which the service's
        # user cannot write: its witnesses are the file beside the log and bundles.
        security["security"]["audit_witness_mlflow"] = False
        (self.root / "conf" / "test" / "security.yml").write_text(
            yaml.safe_dump({"security": security["security"]})
        )
        _chown(self.root, CLIENT_USER)
        keys = self.root / ".bankplatform"
        _chown(keys, SERVICE_USER)
        keys.chmod(0o700)
        _chown(self.run_dir, SERVICE_USER, CLIENT_GROUP)
        self.run_dir.chmod(0o750)
        # Ray's socket paths must stay short: its temporary folder goes in /tmp.
        self.ray_dirs = {
            u: Path(tempfile.mkdtemp(prefix=f"ray-{u}-")) for u in self.homes
        }
        for user, home in self.homes.items():
            home.mkdir()
            _chown(home, user)
            _chown(self.ray_dirs[user], user)
        self.service: subprocess.Popen[bytes] | None = None

    def env(self, user: str, **extra: str) -> dict[str, str]:
        return {
            **command_env(),
            "HOME": str(self.homes[user]),
            "RAY_TMPDIR": str(self.ray_dirs[user]),
            # Set by the host's administrators: who the key service runs as.
            "BANKPLATFORM_KEYSERVICE_USER": SERVICE_USER,
            **extra,
        }

    def run(
        self, user: str, args: list[str], timeout: float = 300, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        program = args[0] if args[0].startswith("/") else str(BIN / args[0])
        return subprocess.run(
            [_tool("runuser"), "-p", "-u", user, "--", program, *args[1:]],
            cwd=self.root,
            env=self.env(user, **extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_service(self) -> None:
        socket = self.run_dir / "keys-test.sock"
        self.service = subprocess.Popen(
            [
                _tool("runuser"),
                "-u",
                SERVICE_USER,
                "--",
                sys.executable,
                "-m",
                "bankplatform.keyservice",
                "--root",
                str(self.root),
                "--env",
                "test",
                "--socket-group",
                CLIENT_GROUP,
                "--idle-seconds",
                "0",
            ],
            cwd=self.root,
            env=self.env(SERVICE_USER),
        )
        deadline = time.monotonic() + 60
        while not socket.exists() and time.monotonic() < deadline:
            assert self.service.poll() is None, "the key service exited"
            time.sleep(0.1)
        assert socket.exists()

    def token(self, user: str, *roles: str) -> str:
        args = ["bankplatform", "token", "issue", "--env", "test", "--as-keyholder"]
        args += ["--user", user, *(x for role in roles for x in ("--role", role))]
        issued = self.run(SERVICE_USER, args)
        assert issued.returncode == 0, issued.stderr
        return issued.stdout.strip()

    def stop(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(timeout=30)
        for folder in self.ray_dirs.values():
            shutil.rmtree(folder, ignore_errors=True)


def _traversable(paths: list[Path]) -> dict[Path, int]:
    """Let other users traverse the folders above ``paths`` (root's pytest folders,
    a Python installed under /root); returns the modes to restore."""
    changed: dict[Path, int] = {}
    for path in paths:
        for folder in [path, *path.parents]:
            mode = folder.stat().st_mode
            if folder.is_dir() and not mode & 0o001:
                changed[folder] = mode
                folder.chmod(mode | 0o005)
    return changed


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    _ensure_users()
    # Not under pytest's own folder: another pytest session of root's (a second
    # suite on the same machine) sets /tmp/pytest-of-root back to 0700 when it
    # starts, and the other users could no longer reach the workspace.
    folder = Path(tempfile.mkdtemp(prefix="bankplatform-os-users-"))
    interpreter = Path(os.path.realpath(sys.executable))
    restore = _traversable([folder, interpreter.parent, REPO])
    shared = Host(folder)
    try:
        shared.start_service()
        scheduler = shared.token("scheduler", "data_scientist", "data_engineer")
        generated = shared.run(
            CLIENT_USER,
            [
                "bankplatform",
                "data",
                "generate",
                "--env",
                "test",
                "--customers",
                "1000",
            ],
            BANKPLATFORM_TOKEN=scheduler,
        )
        assert generated.returncode == 0, generated.stderr[-2000:]
        yield shared
    finally:
        shared.stop()
        for path, mode in restore.items():
            path.chmod(mode)
        shutil.rmtree(folder, ignore_errors=True)


SCRIPT = """
import sys
from pathlib import Path
from bankplatform.workspace import open_workspace
what = sys.argv[1]
root = Path.cwd()
try:
    if what == "catalog":
        open_workspace(env="test").catalog.load(sys.argv[2])
    elif what == "file":
        Path(root, sys.argv[2]).read_bytes()
    elif what == "monitoring-record":
        from bankplatform.security.client import acting_for
        security = open_workspace(env="test").settings.security
        with acting_for("monitoring"):
            security.audit_log().append(
                "monitoring.action", sys.argv[2], "allowed", {"action": "none"}
            )
    elif what == "decrypt":
        from bankplatform.datasets import RawTableDataset
        from bankplatform.security.runtime import acting_in_run
        with acting_in_run("ingestion"):
            RawTableDataset(filepath=sys.argv[2], table="customers", encrypted=True).load()
    print("READ")
except Exception as error:
    print(type(error).__name__, str(error).splitlines()[-1])
"""


def test_the_scheduler_runs_the_pipelines_end_to_end_as_another_os_user(
    host: Host,
) -> None:
    scheduler = host.token("scheduler", "data_scientist", "data_engineer")
    ran = host.run(
        CLIENT_USER,
        ["kedro", "run", "--env", "test"],  # every pipeline: ingestion to evaluation
        timeout=600,
        BANKPLATFORM_TOKEN=scheduler,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (host.root / "data" / "03_primary" / "customers.parquet.enc").exists()
    assert (host.root / "data" / "05_model_input" / "training_set.parquet.enc").exists()
    outcome = json.loads(
        (host.root / "data" / "08_reporting" / "gate_outcome.json").read_text()
    )
    assert outcome["version"] == 1  # trained on Ray, registered, evaluated
    # Every file the client wrote is the client's; the keys stayed the service's.
    owners = {p.stat().st_uid for p in (host.root / "data").rglob("*.enc")}
    assert owners == {pwd.getpwnam(CLIENT_USER).pw_uid}
    assert (host.root / ".bankplatform").stat().st_uid == pwd.getpwnam(
        SERVICE_USER
    ).pw_uid
    # Confidential features are the owner's and the platform group's: 0640 files
    # in a 0750 folder; another user of the host reads none of them.
    features = host.root / "data" / "04_feature"
    files = sorted(
        p
        for p in features.iterdir()
        if p.suffix in (".parquet", ".db") and not p.name.startswith(".")
    )
    assert {p.name for p in files} >= {
        "customer_features.parquet",
        "online.db",
        "registry.db",
    }
    assert {p: p.stat().st_mode & 0o777 for p in files} == dict.fromkeys(files, 0o640)
    assert features.stat().st_mode & 0o777 == 0o750
    for path in files:
        read = subprocess.run(
            [_tool("runuser"), "-u", "nobody", "--", "/bin/cat", str(path)],
            capture_output=True,
            check=False,
        )
        assert read.returncode != 0 and b"Permission denied" in read.stderr, path


def test_a_data_scientist_on_another_os_user_reaches_no_pii_key_or_log(
    host: Host,
) -> None:
    assert (host.root / "data" / "01_raw" / "customers.parquet.enc").exists()
    dana = host.token("dana.scientist", "data_scientist")
    script = host.homes[CLIENT_USER] / "probe.py"
    script.write_text(SCRIPT)
    _chown(script, CLIENT_USER)

    def probe(*args: str, **extra: str) -> str:
        done = host.run(CLIENT_USER, [sys.executable, str(script), *args], **extra)
        return (
            done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
        )

    as_dana = {"BANKPLATFORM_TOKEN": dana, "KEDRO_ENV": "test"}
    # Through the catalog, through a dataset built by hand, as "ingestion": refused.
    assert "may not read_pii on dataset:customers_raw" in probe(
        "catalog", "customers_raw", **as_dana
    )
    assert (
        "dana.scientist (roles: data_scientist) may not run pipeline ingestion"
        in probe("decrypt", "data/01_raw/customers.parquet.enc", **as_dana)
    )
    # The key folder is not the client's to read, with or without a token.
    for secret in (
        ".bankplatform/master.key",
        ".bankplatform/keyring.json",
        ".bankplatform/audit/audit.jsonl",
        ".bankplatform/keyservice-test.session",
    ):
        assert probe("file", secret).startswith("PermissionError"), secret
    # The service reads the log for auditors only; no token, no identity.
    shown = host.run(
        CLIENT_USER, ["bankplatform", "audit", "show", "--env", "test"], **as_dana
    )
    assert shown.stderr.strip() == (
        "Error: access denied: dana.scientist (roles: data_scientist) may not read_audit_log on audit_log"
    )
    anonymous = host.run(
        CLIENT_USER, ["bankplatform", "audit", "show", "--env", "test"]
    )
    assert anonymous.stderr.strip() == (
        "Error: env test needs a signed token in $BANKPLATFORM_TOKEN; an admin issues one with `bankplatform token issue`"
    )
    # Starting ingestion (and so acting as svc-ingestion) is refused before any node.
    run = host.run(
        CLIENT_USER,
        ["kedro", "run", "--env", "test", "--pipeline", "ingestion"],
        **as_dana,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "Error: run failed: access denied: dana.scientist (roles: data_scientist) may not run pipeline ingestion"
    )
    # And the log, read by the service as the auditor, holds those denials.
    auditor = host.token("audrey.auditor", "auditor")
    tail = host.run(
        CLIENT_USER,
        ["bankplatform", "audit", "show", "--env", "test", "--tail", "30"],
        BANKPLATFORM_TOKEN=auditor,
    )
    assert tail.returncode == 0, tail.stderr
    denied = [
        line for line in tail.stdout.splitlines() if '"outcome": "denied"' in line
    ]
    assert any(
        '"actor": "dana.scientist"' in line and "customers_raw" in line
        for line in denied
    )
    verified = host.run(
        CLIENT_USER,
        ["bankplatform", "audit", "verify", "--env", "test"],
        BANKPLATFORM_TOKEN=auditor,
    )
    assert verified.returncode == 0, verified.stderr


def _probe(host: Host, *args: str, **extra: str) -> str:
    script = host.homes[CLIENT_USER] / "probe.py"
    if not script.exists():
        script.write_text(SCRIPT)
        _chown(script, CLIENT_USER)
    done = host.run(CLIENT_USER, [sys.executable, str(script), *args], **extra)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr


def test_a_policy_edited_in_conf_decides_nothing_until_two_admins_install_it(
    host: Host,
) -> None:
    """The first finding: the client owns conf/. Adding read_pii to her role there
    gives the data scientist nothing: the service decides from its installed copy,
    says that conf/ differs, and a tier 1 workspace's install takes two people."""
    conf = host.root / "conf" / "test" / "security.yml"
    saved = conf.read_text()
    try:
        edited = yaml.safe_load(saved)
        base = yaml.safe_load((REPO / "conf" / "base" / "security.yml").read_text())
        edited["access"] = base["access"]
        edited["access"]["roles"]["data_scientist"].append("read_pii")
        conf.write_text(yaml.safe_dump(edited))
        as_dana = {
            "BANKPLATFORM_TOKEN": host.token("dana.scientist", "data_scientist"),
            "KEDRO_ENV": "test",
        }
        assert "may not read_pii on dataset:customers_raw" in _probe(
            host, "catalog", "customers_raw", **as_dana
        )
        status = host.run(
            CLIENT_USER,
            ["bankplatform", "workspace", "status", "--env", "test"],
            **as_dana,
        )
        assert status.returncode == 0, status.stderr
        assert (
            "policy: conf/ differs from the key service's installed policy: "
            "access.roles.data_scientist: "
        ) in status.stdout
        # The keyholder's install, with the first admin's token, only proposes.
        install = ["bankplatform", "keys", "policy", "--env", "test", "--install"]
        proposed = host.run(
            SERVICE_USER,
            install,
            BANKPLATFORM_TOKEN=host.token("paul.admin", "platform_admin"),
        )
        assert proposed.returncode == 0, proposed.stderr
        assert "proposed by paul.admin" in proposed.stdout
        assert "may not read_pii on dataset:customers_raw" in _probe(
            host, "catalog", "customers_raw", **as_dana
        )
    finally:
        conf.write_text(saved)


def test_the_pipeline_header_alone_acts_as_no_service(host: Host) -> None:
    """The third finding: the scheduler may start monitoring; from a plain script
    (no run) the pipeline header wrote svc-monitoring's records. Now refused."""
    scheduler = host.token("scheduler", "data_scientist", "data_engineer")
    refused = _probe(
        host,
        "monitoring-record",
        f"monitoring:credit_default_pd/{time.time_ns()}",
        BANKPLATFORM_TOKEN=scheduler,
        KEDRO_ENV="test",
    )
    assert refused.startswith("AccessDenied"), refused
    assert "needs the run credential the key service grants" in refused


FORGE = """
from datetime import timedelta
from pathlib import Path
from bankplatform.keyservice.authority import KeyAuthority
from bankplatform.keyservice.tokens import TokenService
authority = KeyAuthority(Path.cwd(), "test")
settings = authority.settings
ten_years = timedelta(days=3650)
tokens = TokenService(authority.keyring, authority.policy, settings.revocation_list,
                      settings.token_issuer, settings.token_audience, ten_years)
print(tokens.issue("paul.admin", ["platform_admin"], ten_years)[0])
"""


def test_a_correctly_signed_ten_year_token_is_refused(host: Host) -> None:
    """The sixth finding: the maximum lifetime held at issue only. A token signed
    with the real key for ten years (a key used outside ``issue``) is refused."""
    script = host.homes[SERVICE_USER] / "forge.py"
    script.write_text(FORGE)
    _chown(script, SERVICE_USER)
    forged = host.run(SERVICE_USER, [sys.executable, str(script)])
    assert forged.returncode == 0, forged.stderr[-2000:]
    shown = host.run(
        CLIENT_USER,
        ["bankplatform", "audit", "show", "--env", "test"],
        BANKPLATFORM_TOKEN=forged.stdout.strip().splitlines()[-1],
    )
    assert shown.returncode == 1
    assert shown.stderr.strip() == (
        "Error: token rejected: made to live 5,256,000 minutes, longer than the "
        "maximum of 1,440 (security.token_max_ttl_minutes)"
    )


IMPOSTOR = """
import socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen()
with open(sys.argv[2], "ab") as log:
    while True:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(2)
            try:
                log.write(connection.recv(65536) + b"\\n")
                log.flush()
            except OSError:
                pass
"""


def test_no_token_goes_to_a_socket_another_user_serves(host: Host) -> None:
    """The second finding: a user of the workspace points the key service's socket
    at one of their own (conf/ is theirs to edit) and listens there. An admin's
    command checks who listens before it sends a token, and refuses in one line."""
    home = host.homes[CLIENT_USER]
    script, socket_path, log = home / "impostor.py", home / "k.sock", home / "got.log"
    script.write_text(IMPOSTOR)
    _chown(script, CLIENT_USER)
    impostor = subprocess.Popen(
        [
            _tool("runuser"),
            "-u",
            CLIENT_USER,
            "--",
            sys.executable,
            str(script),
            str(socket_path),
            str(log),
        ],
        env=host.env(CLIENT_USER),
    )
    conf = host.root / "conf" / "test" / "security.yml"
    saved = conf.read_text()
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        edited = yaml.safe_load(saved)
        edited["security"]["keyservice_socket"] = str(socket_path)
        conf.write_text(yaml.safe_dump(edited))
        admin = "not-a-real-token-but-a-secret-all-the-same"
        shown = host.run(
            CLIENT_USER,
            ["bankplatform", "audit", "show", "--env", "test"],
            BANKPLATFORM_TOKEN=admin,
        )
        assert shown.returncode == 1
        assert shown.stderr.strip() == (
            f"Error: the socket {socket_path} is served by {CLIENT_USER} "
            f"(uid {pwd.getpwnam(CLIENT_USER).pw_uid}), not the key service's user "
            f"{SERVICE_USER} (uid {pwd.getpwnam(SERVICE_USER).pw_uid}): no credential sent "
            "(set $BANKPLATFORM_KEYSERVICE_USER to the service's OS user on a shared host)"
        )
        assert admin.encode() not in (log.read_bytes() if log.exists() else b"")
    finally:
        conf.write_text(saved)
        impostor.kill()
        impostor.wait(timeout=30)
