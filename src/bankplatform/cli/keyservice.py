"""``bankplatform keyservice``: run the key and audit service of an env."""

from __future__ import annotations

import click


@click.command("keyservice")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
@click.option(
    "--socket-group",
    help="Make the socket mode 660 for this OS group (the client users of a shared host).",
)
@click.option(
    "--idle-seconds",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Stop after this long without a request (0: never).",
)
def keyservice(env: str | None, socket_group: str | None, idle_seconds: float) -> None:
    """Serve keys, decisions, tokens and audit appends on the env's Unix socket.

    Run it as the OS user that alone can read the key folder (.bankplatform/ or
    conf/<env>/security.yml's keyring folder). In the developer trust domain the
    CLI, `kedro run` and notebooks start it on demand; in production an operator
    (or systemd) starts it.
    """
    from bankplatform.keyservice.server import serve
    from bankplatform.manifest import load_manifest
    from bankplatform.project import find_project_root, resolve_env

    root = find_project_root()
    chosen = resolve_env(load_manifest(root), env)
    click.echo(f"key service of env {chosen} starting (stop with Ctrl+C)", err=True)
    serve(root, chosen, socket_group, idle_seconds)
