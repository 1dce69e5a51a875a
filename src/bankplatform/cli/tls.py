"""``bankplatform tls``: a local CA and certificates for services on the network."""

from __future__ import annotations

import click

# The servers of the production profile besides our own two; each gets
# .bankplatform-tls/<name>.crt and .key.
SERVERS = ("postgres", "redis", "mlflow", "ray")


@click.group()
def tls() -> None:
    """TLS certificates (a local CA, for local use; a bank's PKI issues real ones)."""


@tls.command("init")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("localhost", "127.0.0.1"),
    show_default=True,
    help="Host name or IP address the certificates are for (repeatable).",
)
@click.option(
    "--service",
    type=click.Choice(["all", "keyservice", "scoring", *SERVERS]),
    default="all",
    show_default=True,
    help="Which service's pair to write.",
)
@click.option(
    "--env",
    help="Kedro env whose security.yml and serving.yml apply [manifest default].",
)
def init(hosts: tuple[str, ...], service: str, env: str | None) -> None:
    """Make the local CA (.bankplatform-tls/ca.crt, once) and, signed by it, a key
    (mode 600) and certificate for the key service (security.yml keyservice_tls_*),
    the scoring service (serving.yml tls_*), and PostgreSQL, Redis, the MLflow
    tracking server and Ray (.bankplatform-tls/<name>.crt)."""
    from bankplatform.context import workspace_context
    from bankplatform.security.tls import (
        WORKSPACE_TLS_FOLDER as TLS_FOLDER,
    )
    from bankplatform.security.tls import issue_certificate, local_ca

    ctx = workspace_context(env)
    root = ctx.root
    ca = local_ca(root / TLS_FOLDER)
    pairs = []
    if service in ("all", "keyservice"):
        settings = ctx.security.settings
        pairs.append((settings.keyservice_tls_cert, settings.keyservice_tls_key))
    if service in ("all", "scoring"):
        pairs.append((ctx.serving.tls_cert, ctx.serving.tls_key))
    for name in SERVERS:
        if service in ("all", name):
            folder = root / TLS_FOLDER
            pairs.append((folder / f"{name}.crt", folder / f"{name}.key"))
    click.echo(f"local CA: {ca.cert_file} (clients trust it; its key stays here)")
    for cert_path, key_path in pairs:
        cert, key = issue_certificate(ca, cert_path, key_path, list(hosts))
        click.echo(f"wrote {cert} (with the CA's) and {key} (mode 600, the service's)")
