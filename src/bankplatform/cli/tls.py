"""``bankplatform tls``: certificates for services that listen on the network."""

from __future__ import annotations

import click


@click.group()
def tls() -> None:
    """TLS certificates (self-signed, for local use; a bank's PKI issues real ones)."""


@tls.command("init")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("localhost", "127.0.0.1"),
    show_default=True,
    help="Host name or IP address the certificate is for (repeatable).",
)
@click.option(
    "--service",
    type=click.Choice(["all", "keyservice", "scoring"]),
    default="all",
    show_default=True,
    help="Which service's pair to write.",
)
@click.option(
    "--env",
    help="Kedro env whose security.yml and serving.yml apply [manifest default].",
)
def init(hosts: tuple[str, ...], service: str, env: str | None) -> None:
    """Make a TLS key (mode 600) and self-signed certificate for the key service
    (security.yml keyservice_tls_*) and the scoring service (serving.yml tls_*)."""
    from bankplatform.manifest import load_manifest
    from bankplatform.project import env_config_loader, find_project_root, resolve_env
    from bankplatform.security.runtime import workspace_security
    from bankplatform.security.tls import create_self_signed
    from bankplatform.serving.settings import load_serving_settings

    pairs = []
    if service in ("all", "keyservice"):
        settings = workspace_security(env).settings
        pairs.append((settings.keyservice_tls_cert, settings.keyservice_tls_key))
    if service in ("all", "scoring"):
        root = find_project_root()
        chosen = resolve_env(load_manifest(root), env)
        serving = load_serving_settings(env_config_loader(root, chosen), root)
        pairs.append((serving.tls_cert, serving.tls_key))
    for cert_path, key_path in pairs:
        cert, key = create_self_signed(cert_path, key_path, list(hosts))
        click.echo(
            f"wrote {cert} (give it to clients) and {key} (mode 600, the service's)"
        )
