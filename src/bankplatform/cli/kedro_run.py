"""``kedro run`` as Kedro defines it, but a failed run ends in one line, not a traceback."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from bankplatform.third_party import DEBUG_ENV_VAR


def _one_line_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as error:
            # The boundary to the user: whatever failed, say what in one line.
            if os.environ.get(DEBUG_ENV_VAR):
                raise
            message = str(error).strip().splitlines()
            summary = message[0] if message else type(error).__name__
            raise click.ClickException(f"run failed: {summary}") from None

    return wrapper


@click.group(name="bankplatform")
def cli() -> None:
    """Project commands that Kedro merges into ``kedro``."""


run = click.Command(
    name="run",
    params=kedro_run.params,
    callback=_one_line_errors(kedro_run.callback) if kedro_run.callback else None,
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
cli.add_command(run)
