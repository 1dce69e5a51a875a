"""Warnings of third-party libraries that say nothing a user can act on.

Each is filtered at its source (by the module that raises it, or its exact
message), never by silencing bankplatform's own warnings. Every entry names the
library and why it is noise. ``BANKPLATFORM_DEBUG=1`` keeps them all.
``quiet_start`` runs before any plugin loads: ``kedro`` calls it as this
package's ``kedro.init`` entry point, and ``bankplatform`` on import of its
command line. Libraries reorder the filters after that (Feast's import puts
"once" filters for every DeprecationWarning and RuntimeWarning in front of all
others; MLflow wraps calls in ``simplefilter("once", UserWarning)``), so the same
list is also checked where a warning is shown (``warnings.showwarning``), and
Kedro's project settings, the evidence notebooks and the feature store put the
filters back in front.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

DEBUG_ENV_VAR = "BANKPLATFORM_DEBUG"

# (category, message regex, module regex): as `warnings.filterwarnings` takes them.
NOISE: tuple[tuple[type[Warning], str, str], ...] = (
    # Kedro 1.7 calls an OmegaConf function that warns of its own deprecation.
    (UserWarning, r".*register_new_resolver", ""),
    # kedro-mlflow's config classes use pydantic v1-style `class Config`.
    (DeprecationWarning, "", r"kedro_mlflow\."),
    # MLflow's own built-in PythonModel subclasses lack type hints (ours has them).
    (UserWarning, r".*Add type hints to the `predict` method", ""),
    # ibis (Feast's DuckDB offline store) calls a DuckDB method renamed upstream.
    (DeprecationWarning, r".*fetch_arrow_table\(\) is deprecated", ""),
    # Evidently's legacy modules import numpy.core (renamed numpy._core).
    # A compiler warning of one of its docstrings (raised once, when the
    # bytecode is first written; its module is the file's path).
    (DeprecationWarning, r"invalid escape sequence", r"(.*[/\\])?evidently[./\\]"),
    (DeprecationWarning, r".*numpy\.core is deprecated", ""),
    # SciPy's chi-squared, called by Evidently's test, divides by a zero expected
    # count when a category is absent from the reference (the test still decides).
    (RuntimeWarning, r"divide by zero encountered in divide", r"scipy\.stats\."),
    # Evidently's classification quality computes precision at its own 0.5
    # threshold; a window of low default probabilities predicts no default there
    # (the report shows the 0; monitoring decides on the AUC).
    (UserWarning, r"Precision is ill-defined", r"sklearn\."),
    # litestar (pulled in by a dependency of Ray Serve) warns of its own API.
    (DeprecationWarning, r".*Call to deprecated function 'Dependency'", ""),
    (DeprecationWarning, r".*Use of deprecated class 'DependencyKwarg'", ""),
)


# Log levels of libraries that read them from the environment at import, and
# progress bars meant for an interactive shell. Set only where unset.
LIBRARY_SETTINGS: dict[str, str] = {
    # MLflow logs each registration, schema check and table migration at INFO.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # One tqdm bar per artefact download (a model load reads several).
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Two "View run / View experiment" lines on stdout per run ended against a
    # tracking server (`bankplatform workspace status` says where the run is).
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def debugging() -> bool:
    """Whether ``$BANKPLATFORM_DEBUG`` asks to see everything."""
    return bool(os.environ.get(DEBUG_ENV_VAR))


def quiet_start() -> None:
    """Library log levels and warning filters, before any third party is imported."""
    if debugging():
        return
    for name, value in LIBRARY_SETTINGS.items():
        os.environ.setdefault(name, value)
    quiet_third_party_warnings()


@contextlib.contextmanager
def mlflow_event_lines_off() -> Iterator[None]:
    """MLflow's own event lines (``Successfully registered model ...``, printed
    unconditionally) off for a call whose outcome the caller reports itself."""
    from mlflow.utils import logging_utils  # noqa: PLC0415

    if debugging():
        yield
        return
    logging_utils.disable_logging()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        logging_utils.enable_logging()  # type: ignore[no-untyped-call]


def quiet_third_party_warnings() -> None:
    """Filter ``NOISE`` unless ``$BANKPLATFORM_DEBUG`` is set: as warning filters,
    and where a warning is shown (for filters a library pushed aside)."""
    if debugging():
        return
    for category, message, module in NOISE:
        warnings.filterwarnings(
            "ignore", message=message, category=category, module=module
        )
    global _shown_before  # noqa: PLW0603  (the one display hook of the process)
    if warnings.showwarning is not _show_unless_noise:
        _shown_before = warnings.showwarning
        warnings.showwarning = _show_unless_noise


def is_noise(message: Warning | str, category: type[Warning], filename: str) -> bool:
    """Whether ``NOISE`` names this warning (as a filter would match it)."""
    module = _module_of(filename)
    return any(
        issubclass(category, noise_category)
        and re.compile(noise_message, re.IGNORECASE).match(str(message))
        and re.compile(noise_module).match(module)
        for noise_category, noise_message, noise_module in NOISE
    )


_shown_before: Callable[..., Any] = warnings.showwarning


def _show_unless_noise(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if not is_noise(message, category, filename):
        _shown_before(message, category, filename, lineno, file, line)


def _module_of(filename: str) -> str:
    """A library file's dotted module name (the path itself outside site-packages)."""
    parts = Path(filename).with_suffix("").parts
    for folder in ("site-packages", "dist-packages"):
        if folder in parts:
            return ".".join(parts[parts.index(folder) + 1 :])
    return filename
