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
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def init(hosts: tuple[str, ...], env: str | None) -> None:
    """Make the key service's TLS key (mode 600) and self-signed certificate."""
    from bankplatform.security.runtime import workspace_security
    from bankplatform.security.tls import create_self_signed

    settings = workspace_security(env).settings
    cert, key = create_self_signed(
        settings.keyservice_tls_cert, settings.keyservice_tls_key, list(hosts)
    )
    click.echo(f"wrote {cert} (give it to clients) and {key} (mode 600, the service's)")
