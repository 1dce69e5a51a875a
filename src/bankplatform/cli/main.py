"""The ``bankplatform`` command line (also ``python -m bankplatform``).


Every command exits 0 on success; on an expected failure it prints one line,
``error: <what was wrong>``, to stderr and exits 1, never a traceback.
"""

from __future__ import annotations

import os
from typing import Any

import click
from pydantic import ValidationError

from bankplatform import __version__
from bankplatform.cli.audit import audit
from bankplatform.cli.data import data
from bankplatform.cli.keys import keys
from bankplatform.cli.keyservice import keyservice
from bankplatform.cli.kpis import kpis
from bankplatform.cli.lineage import lineage
from bankplatform.cli.model import model
from bankplatform.cli.review import review
from bankplatform.cli.scoring import decision, serve, simulate, traffic
from bankplatform.cli.stream import simulate_bookings, stream
from bankplatform.cli.tls import tls
from bankplatform.cli.token import token
from bankplatform.cli.tracking_server import tracking_server
from bankplatform.cli.workspace import workspace
from bankplatform.errors import BankplatformError

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


class _OneLineErrors(click.Group):
    """A click group that turns expected failures into one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BankplatformError as error:
            raise click.ClickException(str(error)) from None
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise click.ClickException(f"{where}: {first['msg']}") from None


@click.group(
    name="bankplatform",
    cls=_OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="bankplatform")
def commands() -> None:
    """bankplatform: the governed ML platform workspace for a bank's credit models."""


commands.add_command(workspace)
commands.add_command(data)
commands.add_command(lineage)
commands.add_command(keys)
commands.add_command(keyservice)
commands.add_command(audit)
commands.add_command(token)
commands.add_command(tls)
commands.add_command(model)
commands.add_command(serve)
commands.add_command(traffic)
commands.add_command(decision)
simulate.add_command(simulate_bookings)
commands.add_command(simulate)
commands.add_command(stream)
commands.add_command(review)
commands.add_command(kpis)
commands.add_command(tracking_server)


def main() -> None:
    """Entry point of the ``bankplatform`` script."""
    commands(prog_name="bankplatform")
