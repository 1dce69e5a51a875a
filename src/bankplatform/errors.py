"""Errors that the command line and pipelines report to a user in one line."""

from __future__ import annotations

from pydantic import ValidationError


class BankplatformError(Exception):
    """An expected failure whose message is shown to the user as it is.

    The message must fit on one line and say what was wrong and where (which
    file, which field), so that the command line never needs a traceback.
    """


class ManifestError(BankplatformError):
    """The workspace manifest (``.kedro.yml``) is missing or invalid."""


class RawExtractError(BankplatformError):
    """A raw extract file cannot be read as the table it should hold."""


def settings_error(source: str, error: ValidationError) -> BankplatformError:
    """One line for invalid settings: the file, the first field and what is wrong."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return BankplatformError(f"{source}: {where}: {first['msg'].splitlines()[0]}")
