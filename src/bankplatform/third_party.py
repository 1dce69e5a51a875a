"""Warnings of third-party libraries that say nothing a user can act on.

Each is filtered at its source (by the module that raises it, or its exact
message), never by silencing bankplatform's own warnings. Every entry names the
library and why it is noise. ``BANKPLATFORM_DEBUG=1`` keeps them all.
Installed by Kedro's project settings (every ``kedro run`` and notebook session),
the command line and the evidence notebooks. Warnings raised while ``kedro``'s
own command line loads its plugins (MLflow's, kedro-mlflow's) come before any
of this runs and still show.
"""

from __future__ import annotations

import os
import warnings

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
    (DeprecationWarning, r".*numpy\.core is deprecated", ""),
    # SciPy's chi-squared, called by Evidently's test, divides by a zero expected
    # count when a category is absent from the reference (the test still decides).
    (RuntimeWarning, r"divide by zero encountered in divide", r"scipy\.stats\."),
    # litestar (pulled in by a dependency of Ray Serve) warns of its own API.
    (DeprecationWarning, r".*Call to deprecated function 'Dependency'", ""),
    (DeprecationWarning, r".*Use of deprecated class 'DependencyKwarg'", ""),
)


def quiet_third_party_warnings() -> None:
    """Filter ``NOISE`` unless ``$BANKPLATFORM_DEBUG`` is set."""
    if os.environ.get(DEBUG_ENV_VAR):
        return
    for category, message, module in NOISE:
        warnings.filterwarnings(
            "ignore", message=message, category=category, module=module
        )
