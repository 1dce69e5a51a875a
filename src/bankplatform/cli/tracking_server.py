"""``bankplatform tracking-server``: MLflow's tracking server of an env (production)."""

from __future__ import annotations

import os

import click


@click.command("tracking-server")
@click.option(
    "--env", help="Kedro env whose tracking_server.yml applies [manifest default]."
)
def tracking_server(env: str | None) -> None:
    """Start MLflow's tracking server on PostgreSQL (verify-full TLS) with basic
    auth, over HTTPS, from conf/<env>/tracking_server.yml and the credentials
    entry it names (conf/local/credentials.yml). Runs in the foreground."""
    from bankplatform.config_loader import read_credentials
    from bankplatform.lineage.tracking_server import (
        load_tracking_server_settings,
        server_launch,
    )
    from bankplatform.manifest import load_manifest
    from bankplatform.project import env_config_loader, find_project_root, resolve_env

    root = find_project_root()
    chosen = resolve_env(load_manifest(root), env)
    loader = env_config_loader(root, chosen)
    settings = load_tracking_server_settings(loader)
    secrets = read_credentials(loader, settings.credentials)
    command, environment = server_launch(settings, secrets, root)
    click.echo(
        f"tracking server of env {chosen} on https://{settings.host}:{settings.port} "
        f"(PostgreSQL {settings.database_host}:{settings.database_port}, basic auth)",
        err=True,
    )
    os.chdir(root)
    os.execve(command[0], command, environment)  # noqa: S606 - our interpreter, our arguments
