"""Real servers of the production profile, started by the tests on loopback.

PostgreSQL: an instance of the machine's PostgreSQL binaries of the tests' own
(``initdb`` into a throw-away folder, another port), so that it can serve the
certificate the workspace's CA signed and accept TLS connections only; the
machine's own server on 5432 is left as it is. Run as the ``postgres`` OS user
when the tests run as root (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from tests.conftest import BIN
from tests.helpers import free_port

SUPERUSER_SECRET = secrets.token_urlsafe(18)  # made afresh each run


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        msg = "PostgreSQL's binaries are not installed (/usr/lib/postgresql/*/bin)"
        raise RuntimeError(msg)
    return found[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    return (
        ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command
    )


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@dataclass
class PostgresTLS:
    """A running PostgreSQL that accepts TLS connections only (scram passwords)."""

    folder: Path
    port: int
    ca_cert: Path

    def connect(self, database: str = "postgres", **options: str) -> object:
        """A superuser connection over verify-full TLS (options override)."""
        settings = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": "postgres",
            "password": SUPERUSER_SECRET,
            "dbname": database,
            "sslmode": "verify-full",
            "sslrootcert": str(self.ca_cert),
            "connect_timeout": "10",
            **options,
        }
        return psycopg2.connect(**settings)

    def execute(self, *statements: str) -> None:
        """Run statements as the superuser, each in its own transaction."""
        connection = self.connect()
        connection.autocommit = True  # type: ignore[attr-defined]
        try:
            with connection.cursor() as cursor:  # type: ignore[attr-defined]
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()  # type: ignore[attr-defined]

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(_postgres_bin() / "pg_ctl"),
                    "-D",
                    str(self.folder / "data"),
                    "-m",
                    "fast",
                    "stop",
                ]
            ),
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def serve_database(folder: Path, name: str, password: str) -> Iterator[PostgresTLS]:
    """``postgres_with_database`` for a module's fixture (``yield from``), stopped after."""
    server = postgres_with_database(folder, name, password)
    try:
        yield server
    finally:
        server.stop()


def postgres_with_database(folder: Path, name: str, password: str) -> PostgresTLS:
    """A TLS-only PostgreSQL with its own CA in ``folder`` and a database ``name``
    owned by a role of the same name with ``password``."""
    from bankplatform.security.tls import issue_certificate, local_ca

    ca = local_ca(folder)
    cert, key = issue_certificate(
        ca, folder / "pg.crt", folder / "pg.key", ["127.0.0.1"]
    )
    server = start_postgres(cert, key, ca.cert_file)
    server.execute(
        f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
        f"CREATE DATABASE {name} OWNER {name}",
    )
    return server


def start_postgres(server_cert: Path, server_key: Path, ca_cert: Path) -> PostgresTLS:
    """initdb, TLS on with the given certificate, only ``hostssl`` in pg_hba, start."""
    folder = Path(tempfile.mkdtemp(prefix="bankplatform-pg-"))
    folder.chmod(0o755)
    data, logs, sockets = folder / "data", folder / "logs", folder / "sockets"
    for sub in (data, logs, sockets):
        sub.mkdir()
        _own(sub)
    password_file = folder / "pw"
    password_file.write_text(SUPERUSER_SECRET)
    _own(password_file)
    binaries = _postgres_bin()
    subprocess.run(
        _as_postgres(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={password_file}",
                "-E",
                "UTF8",
            ]
        ),
        capture_output=True,
        check=True,
        timeout=120,
    )
    password_file.unlink()
    for source, name in ((server_cert, "server.crt"), (server_key, "server.key")):
        shutil.copy(source, data / name)
        (data / name).chmod(0o600)
        _own(data / name)
    port = free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{sockets}'\n"
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            "ssl_min_protocol_version = 'TLSv1.2'\nmax_connections = 200\n"
        )
    # TLS connections with a password only: a plaintext one finds no entry.
    (data / "pg_hba.conf").write_text(
        "local   all all                trust\n"
        "hostssl all all 127.0.0.1/32   scram-sha-256\n"
    )
    subprocess.run(
        _as_postgres(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(logs / "postgres.log"),
                "-w",
                "start",
            ]
        ),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return PostgresTLS(folder, port, ca_cert)


@dataclass
class RedisTLS:
    """A running Redis that speaks TLS only (no plaintext port), with a password."""

    process: subprocess.Popen[bytes]
    port: int
    password: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_redis(
    server_cert: Path, server_key: Path, ca_cert: Path, folder: Path
) -> RedisTLS:
    """redis-server with ``--port 0`` (no plaintext) and a TLS port; nothing on disk."""
    port, password = free_port(), secrets.token_urlsafe(18)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "redis.conf"  # the password in a file of the tests', not in argv
    config.write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\n"
        f"tls-cert-file {server_cert}\ntls-key-file {server_key}\ntls-ca-cert-file {ca_cert}\n"
        f'tls-auth-clients no\nrequirepass {password}\nsave ""\nappendonly no\n'
        f"dir {folder}\n"
    )
    config.chmod(0o600)
    process = subprocess.Popen(
        ["/usr/bin/redis-server", str(config)],
        stdout=(folder / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    import redis

    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        ssl=True,
        ssl_ca_certs=str(ca_cert),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return RedisTLS(process, port, password)


@dataclass
class RayClusterTLS:
    """A two-node Ray cluster on this machine: token auth, TLS on every gRPC link."""

    address: str
    environment: dict[str, str]
    temp_dir: Path

    def stop(self) -> None:
        """Kill this cluster's processes only (``ray stop`` would kill every Ray
        on the machine, another test's included)."""
        port = self.address.rsplit(":", 1)[1]
        marks = (
            str(self.temp_dir).encode(),
            f"127.0.0.1:{port}".encode(),
            f"={port}".encode(),
        )
        for _ in range(2):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes()
                except OSError:
                    continue
                if (
                    any(mark in text for mark in marks)
                    and int(cmdline.parent.name) != os.getpid()
                ):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(cmdline.parent.name), signal.SIGKILL)
            time.sleep(1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def node_ip_address() -> str:
    """The address Ray's command line advertises for this host (certificates must name it)."""
    from ray._private import services

    return str(services.get_node_ip_address())


def start_ray_cluster(
    cert: Path,
    key: Path,
    ca_cert: Path,
    base_env: dict[str, str],
    cpus_per_node: int = 1,
) -> RayClusterTLS:
    """``ray start --head`` and a second ``ray start --address``, each with
    ``cpus_per_node`` CPUs and a resource of its own (``head_node``, ``second_node``)."""
    port = free_port()
    # Ray's socket paths must stay short: its temporary folder goes in /tmp.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-tls-"))
    environment = {
        **base_env,
        "RAY_USE_TLS": "1",
        "RAY_TLS_SERVER_CERT": str(cert),
        "RAY_TLS_SERVER_KEY": str(key),
        "RAY_TLS_CA_CERT": str(ca_cert),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        str(cpus_per_node),
        "--disable-usage-stats",
    ]
    commands = [
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--port",
            str(port),
            *common,
            "--resources",
            '{"head_node": 1}',
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(temp_dir),
        ],
        [
            str(BIN / "ray"),
            "start",
            "--address",
            f"127.0.0.1:{port}",
            *common,
            "--resources",
            '{"second_node": 1}',
            "--temp-dir",
            str(temp_dir),
        ],
    ]
    cluster = RayClusterTLS(f"127.0.0.1:{port}", environment, temp_dir)
    for command in commands:
        done = subprocess.run(
            command,
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            cluster.stop()
            msg = f"{' '.join(command[:3])} failed: {done.stderr[-2000:]}"
            raise RuntimeError(msg)
    return cluster
